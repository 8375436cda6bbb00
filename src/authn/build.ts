import { isDeepStrictEqual } from 'node:util';
import type { Clock } from '../clock.js';
import { roleRank, type GatewayConfig } from '../config/load.js';
import type { Logger } from 'pino';
import type { KeyStore } from '../store/types.js';
import type { InvalidationEvent } from '../revocation/types.js';
import { compileExternalKeys } from '../revocation/external-keys.js';
import { isTokenRevocationId, parseScopedSubject } from '../revocation/ids.js';
import { AssertionSigner } from '../identity/assertion.js';
import { JwtAuthenticator } from './jwt/authenticator.js';
import { ApiKeyAuthenticator } from './api-key/authenticator.js';

/**
 * The authenticators a running gateway serves with, by their concrete kinds: besides
 * authenticating, their caches are evicted on revocations and their stats read by metrics.
 */
export interface BuiltAuthenticators {
  readonly jwt: JwtAuthenticator | undefined;
  readonly apiKey: ApiKeyAuthenticator | undefined;
  readonly assertion: AssertionSigner | undefined;
}

export interface AuthenticatorDeps {
  readonly store: KeyStore;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Whether the revocation view runs on Redis (opened once: a reload cannot add it). */
  readonly onRedis: boolean;
}

/** What a previous build served with, and the config it was built from. */
export interface PreviousBuild {
  readonly config: GatewayConfig;
  readonly authn: BuiltAuthenticators;
}

/**
 * The authenticators for `config`. With a previous build, each is rebuilt only when its
 * own sections differ from the config that build came from; `replaced` are the ones a
 * rebuild superseded (to close once requests that started on them are done).
 */
export async function buildAuthenticators(config: GatewayConfig, deps: AuthenticatorDeps, prev?: PreviousBuild): Promise<{ authn: BuiltAuthenticators; replaced: Array<{ close(): unknown }> }> {
  if (config.revocation.externalKeys.length > 0 && !deps.onRedis) {
    // Refusing the reload beats serving tokens the API has revoked without a word.
    throw new TypeError('revocation.externalKeys needs Redis, and this gateway runs without it: restart it with revocation.redis set');
  }
  const changed = (sections: ReadonlyArray<keyof GatewayConfig>) => prev === undefined || sections.some((s) => !isDeepStrictEqual(prev.config[s], config[s]));
  const replaced: Array<{ close(): unknown }> = [];
  let { jwt, apiKey, assertion } = prev?.authn ?? { jwt: undefined, apiKey: undefined, assertion: undefined };
  if (changed(['jwt', 'roles']) || !isDeepStrictEqual(prev?.config.revocation.externalKeys, config.revocation.externalKeys)) {
    if (jwt) replaced.push(jwt);
    jwt = jwtAuthenticator(config, deps);
    await jwt?.start();
  }
  if (changed(['apiKeys', 'roles'])) {
    if (apiKey) replaced.push(apiKey);
    apiKey = new ApiKeyAuthenticator(deps.store, config.apiKeys, (role) => roleRank(config, role), deps.clock, {
      onLastUsedError: (err) => deps.logger.warn({ err: String(err) }, 'recording last-used times failed'),
    });
  }
  if (prev === undefined || !isDeepStrictEqual(prev.config.identity.assertion, config.identity.assertion)) assertion = await assertionSigner(config, deps);
  return { authn: { jwt, apiKey, assertion }, replaced };
}

function jwtAuthenticator(config: GatewayConfig, deps: AuthenticatorDeps): JwtAuthenticator | undefined {
  if (config.jwt.issuers.length === 0) return undefined;
  return new JwtAuthenticator(config.jwt, (role) => roleRank(config, role), deps.clock, {
    onJwksError: (issuer, err) => deps.logger.warn({ issuer, err: String(err) }, 'JWKS fetch failed'),
    externalKeys: compileExternalKeys(config.revocation.externalKeys),
  });
}

function assertionSigner(config: GatewayConfig, deps: AuthenticatorDeps): Promise<AssertionSigner> | undefined {
  const a = config.identity.assertion;
  if (!a) return undefined;
  const { store, clock } = deps;
  return AssertionSigner.create({
    ttlMs: a.ttl,
    ...(a.privateKey !== undefined ? { privateKey: a.privateKey } : {}),
    clock,
    kv: {
      get: (n) => store.getKv(n),
      set: (n, v) => store.setKv(n, v, clock.now()),
      setIfAbsent: (n, v) => store.setKvIfAbsent(n, v, clock.now()),
    },
  });
}

/**
 * Evicts what an invalidation from the fleet makes stale. Only key records change without
 * a revocation; JWT revocations are all on record.
 */
export function evictInvalidated(authn: BuiltAuthenticators, ev: InvalidationEvent): void {
  const { jwt, apiKey } = authn;
  if (ev.kind === 'all') apiKey?.evictAll();
  else if (ev.kind === 'added') apiKey?.forgetRefusals();
  else if (ev.kind === 'id') {
    if (isTokenRevocationId(ev.revocationId)) jwt?.evict(ev.revocationId);
    else apiKey?.evict(ev.revocationId);
  } else {
    const scoped = parseScopedSubject(ev.subject);
    if (scoped?.scope === 'tokens') jwt?.evictSubject(scoped.subject);
    else if (scoped?.scope === 'keys') apiKey?.evictSubject(scoped.subject);
  }
}
