import { isDeepStrictEqual } from 'node:util';
import type { Clock } from './clock.js';
import { systemClock } from './clock.js';
import { roleRank, type GatewayConfig } from './config/load.js';
import type { Services } from './gateway.js';
import type { Logger } from './ops/log.js';
import type { Authenticators, Runtime } from './pipeline/runtime.js';
import type { Identity } from './authn/types.js';
import { JwtAuthenticator } from './authn/jwt/authenticator.js';
import { ApiKeyAuthenticator } from './authn/api-key/authenticator.js';
import { openStore } from './store/open.js';
import { REVOCATION_CHANNEL, type KeyStore, type RevocationLog, type RevocationNotice } from './store/types.js';
import { KeyService, type KeyRevocationEvent } from './keys/service.js';
import { openRevocation, revocationBackend } from './revocation/open.js';
import { UsageCredits } from './limits/credits.js';
import { openLimiter } from './limits/open.js';
import type { InvalidationEvent, RevocationSnapshot, RevocationSource, RevocationStore } from './revocation/types.js';
import { DEFAULT_EXPIRY_GRACE_MS, ThrottledLog } from './revocation/support.js';
import { compileExternalKeys } from './revocation/external-keys.js';
import { formatRevocationId, formatScopedSubject, fromTokenRecordId, isTokenRevocationId, parseScopedSubject } from './revocation/ids.js';
import { TokenService } from './tokens/service.js';
import type { ReadinessCheck } from './ops/admin.js';
import { AssertionSigner } from './identity/assertion.js';
import { sectionsChanged, type ConfigSection } from './runtime.js';

/** The store-backed services both `serve` and the key/token commands use. */
export interface Core {
  readonly store: KeyStore;
  readonly revocation: RevocationStore;
  readonly keys: KeyService;
  readonly tokens: TokenService;
  readonly clock: Clock;
  close(): Promise<void>;
}

export interface CoreOptions {
  clock?: Clock;
  /** Called on every revocation check the backend could not answer. */
  onRevocationFailure?: (err: unknown) => void;
  /** Directory relative `sqlite://` paths resolve against (default: working directory). */
  baseDir?: string;
  /** PostgreSQL notification channel override (tests sharing one database). */
  channel?: string;
  /** How often a running gateway deletes token revocations that can no longer matter (default 1 h). */
  pruneIntervalMs?: number;
}

type KeyRow = { revocationId: string; expiresAt: number | null };
type TokenRow = { id: string; until: number | null };
type SubjectRow = { subject: string; scope: string; revokedBefore: number };

/** Store rows as revocation entries: ids by kind, subjects scoped by the credentials they cover. */
function toSnapshot(ks: readonly KeyRow[], ts: readonly TokenRow[], ss: readonly SubjectRow[]): RevocationSnapshot {
  const out: RevocationSnapshot = { ids: [], subjects: [] };
  for (const k of ks) out.ids.push({ revocationId: k.revocationId, until: k.expiresAt ?? undefined });
  for (const t of ts) out.ids.push({ revocationId: formatRevocationId(fromTokenRecordId(t.id)), until: t.until ?? undefined });
  for (const s of ss) {
    if (s.scope !== 'tokens') out.subjects.push({ subject: formatScopedSubject('keys', s.subject), before: s.revokedBefore });
    if (s.scope !== 'keys') out.subjects.push({ subject: formatScopedSubject('tokens', s.subject), before: s.revokedBefore });
  }
  return out;
}

/** One notice of the store's revocation channel as revocation entries. */
function noticeSnapshot(payload: string): RevocationSnapshot {
  const n = JSON.parse(payload) as RevocationNotice;
  if (n.kind === 'key') return toSnapshot([n], [], []);
  if (n.kind === 'token') return toSnapshot([], [n], []);
  if (n.kind === 'changed') return { ids: [], subjects: [], changed: [n.revocationId] };
  if (n.kind === 'added') return { ids: [], subjects: [], added: true };
  return toSnapshot([], [], [n]);
}

/** The durable record of revocations, as the revocation view loads it (subjects scoped by kind). */
export function revocationSource(store: RevocationLog & Pick<KeyStore, 'kind' | 'listen'>, clock: Clock, logger?: Pick<Logger, 'warn' | 'error'>): RevocationSource {
  const loadActive = async (): Promise<RevocationSnapshot> => {
    // A credential is accepted a clock tolerance past its end: so is its revocation kept.
    const since = clock.now() - DEFAULT_EXPIRY_GRACE_MS;
    const [ks, ts, ss] = await Promise.all([store.listActiveRevokedKeys(since), store.listActiveTokenRevocations(since), store.listSubjectRevocations()]);
    return toSnapshot(ks, ts, ss);
  };
  const source: RevocationSource = {
    loadActive,
    changedSince: async (since) => {
      const [ks, ts, ss] = await Promise.all([store.listRevokedKeysSince(since), store.listTokenRevocationsSince(since), store.listSubjectRevocationsSince(since)]);
      return toSnapshot(ks, ts, ss);
    },
  };
  // The embedded file has no server to push changes: every process polls its notices.
  if (store.kind === 'sqlite') {
    // A file that cannot be read (a disk error) would fail every poll: one line per 30 s.
    const failures = logger === undefined ? undefined : new ThrottledLog(logger, 30_000);
    source.watch = (apply) =>
      store.listen(REVOCATION_CHANNEL, {
        onError: (err) => failures?.error({ err: err.message }, 'revocation: reading the store\'s notices failed; changes from other processes are not seen'),
        onMessage: (payload) => {
          try {
            apply(noticeSnapshot(payload));
          } catch (err) {
            logger?.warn({ err: String(err) }, 'revocation: ignored a malformed store notice');
          }
        },
        onReconnect: () => {
          loadActive().then(apply, (err: unknown) => logger?.warn({ err: String(err) }, 'revocation: reloading after missed notices failed'));
        },
      });
  }
  return source;
}

/** Opens the key store (migrated), the revocation view and the key/token services on them. */
export async function openCore(config: GatewayConfig, logger: Logger, opts: CoreOptions = {}): Promise<Core> {
  const clock = opts.clock ?? systemClock;
  const store = await openStore(config.store.url, {
    poolSize: config.store.poolSize,
    migrate: true,
    ...(opts.baseDir === undefined ? {} : { baseDir: opts.baseDir }),
    onError: (err) => logger.warn({ err: err.message }, 'key store connection error'),
  });
  let revocation: RevocationStore;
  try {
    revocation = await openRevocation({
      config: config.revocation,
      databaseUrl: config.store.url,
      source: revocationSource(store, clock, logger),
      logger,
      clock,
      ...(opts.channel === undefined ? {} : { channel: opts.channel }),
      ...(opts.onRevocationFailure === undefined ? {} : { onCheckFailure: opts.onRevocationFailure }),
    });
  } catch (err) {
    await store.close();
    throw err;
  }
  const onRevoke = async (ev: KeyRevocationEvent): Promise<void> => {
    if (ev.kind === 'key') await revocation.revoke(ev.revocationId, ev.expiresAt ?? undefined);
    else if (ev.kind === 'change') await revocation.evict(ev.revocationId);
    else await revocation.revokeSubject(formatScopedSubject('keys', ev.subject), ev.revokedBefore);
  };
  const keys = new KeyService({ store, config: config.apiKeys, clock, roles: config.roles, onRevoke });
  const tokens = new TokenService(store, revocation, clock);
  return {
    store, revocation, keys, tokens, clock,
    close: async () => {
      await revocation.close().catch(() => undefined);
      await store.close();
    },
  };
}

/**
 * Revocation check on the scoped subject of the credential's kind (keys and JWTs of one
 * subject are revoked apart), timing the asynchronous checks when asked to.
 */
export function scopedCheck(revocation: RevocationStore, observe?: (ms: number) => void) {
  return {
    isRevoked: (id: Pick<Identity, 'revocationId' | 'subject' | 'issuedAt' | 'externalRevocationKeys'> & { method?: Identity['method'] }) => {
      const r = revocation.isRevoked({
        revocationId: id.revocationId,
        subject: formatScopedSubject(id.method === 'jwt' ? 'tokens' : 'keys', id.subject),
        issuedAt: id.issuedAt,
        externalRevocationKeys: id.externalRevocationKeys,
      });
      if (observe === undefined || typeof r === 'boolean') return r;
      const t0 = performance.now();
      return r.finally(() => observe(performance.now() - t0));
    },
  };
}

/**
 * Deletes, every `everyMs`, the token revocations whose token can no longer be accepted
 * (its expiry plus the longest clock tolerance has passed). Instances pruning at once
 * are harmless: a deletion is idempotent.
 */
function startPruning(core: Core, logger: Logger, everyMs: number): NodeJS.Timeout {
  const timer = setInterval(() => {
    core.store.pruneTokenRevocations(core.clock.now() - DEFAULT_EXPIRY_GRACE_MS).then(
      (n) => { if (n > 0) logger.info({ pruned: n }, 'pruned token revocations past their expiry'); },
      (err: unknown) => logger.warn({ err: String(err) }, 'pruning token revocations failed; retrying at the next interval'),
    );
  }, everyMs);
  timer.unref();
  return timer;
}

export interface GatewayServices extends Services {
  readonly core: Core;
  readonly checks: () => ReadinessCheck[];
  /** The authenticators currently serving (for metrics and the admin API). */
  current(): { jwt: JwtAuthenticator | undefined; apiKey: ApiKeyAuthenticator | undefined; assertion: AssertionSigner | undefined };
}

/**
 * The composition root of `serve`: one Core, authenticators rebuilt only when their part
 * of the config changes, cache eviction on every invalidation from the fleet.
 */
export async function openServices(config: GatewayConfig, logger: Logger, opts: CoreOptions & { observeRevocation?: (ms: number) => void } = {}): Promise<GatewayServices> {
  const core = await openCore(config, logger, opts);
  const clock = core.clock;
  let jwt: JwtAuthenticator | undefined;
  let apiKey: ApiKeyAuthenticator | undefined;
  let assertion: AssertionSigner | undefined;
  // The config the authenticators were last built from: each is rebuilt only when its own
  // sections differ from that one (the store is opened once: it takes a restart).
  let built: GatewayConfig | undefined;
  const changed = (cfg: GatewayConfig, sections: readonly ConfigSection[]) => built === undefined || sectionsChanged(built, cfg, sections);
  const retired: Array<{ close(): unknown }> = [];

  const unsubscribe = core.revocation.onInvalidate((ev: InvalidationEvent) => {
    // Only key records change without a revocation; JWT revocations are all on record.
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
  });

  // The revocation view is opened once; a reload cannot give a gateway without Redis one.
  const onRedis = revocationBackend(config.revocation, config.store.url) === 'redis';
  const authenticators = async (cfg: GatewayConfig): Promise<Authenticators> => {
    if (cfg.revocation.externalKeys.length > 0 && !onRedis) {
      // Refusing the reload beats serving tokens the API has revoked without a word.
      throw new TypeError('revocation.externalKeys needs Redis, and this gateway runs without it: restart it with revocation.redis set');
    }
    const rank = (role: string) => roleRank(cfg, role);
    if (changed(cfg, ['jwt', 'roles']) || !isDeepStrictEqual(built?.revocation.externalKeys, cfg.revocation.externalKeys)) {
      if (jwt) retired.push(jwt);
      jwt = cfg.jwt.issuers.length > 0
        ? new JwtAuthenticator(cfg.jwt, rank, clock, {
            onJwksError: (issuer, err) => logger.warn({ issuer, err: String(err) }, 'JWKS fetch failed'),
            externalKeys: compileExternalKeys(cfg.revocation.externalKeys),
          })
        : undefined;
      await jwt?.start();
    }
    if (changed(cfg, ['apiKeys', 'roles'])) {
      if (apiKey) retired.push(apiKey);
      apiKey = new ApiKeyAuthenticator(core.store, cfg.apiKeys, rank, clock, { onLastUsedError: (err) => logger.warn({ err: String(err) }, 'recording last-used times failed') });
    }
    if (built === undefined || !isDeepStrictEqual(built.identity.assertion, cfg.identity.assertion)) {
      const a = cfg.identity.assertion;
      assertion = a
        ? await AssertionSigner.create({
            ttlMs: a.ttl,
            ...(a.privateKey !== undefined ? { privateKey: a.privateKey } : {}),
            clock,
            kv: {
              get: (n) => core.store.getKv(n),
              set: (n, v) => core.store.setKv(n, v, clock.now()),
              setIfAbsent: (n, v) => core.store.setKvIfAbsent(n, v, clock.now()),
            },
          })
        : undefined;
    }
    built = cfg;
    return { jwt, apiKey, assertion };
  };

  const revocation = scopedCheck(core.revocation, opts.observeRevocation);
  const pruner = startPruning(core, logger, opts.pruneIntervalMs ?? 3_600_000);
  const limiter = openLimiter(config, logger, new UsageCredits(core.store));
  return {
    core,
    authenticators,
    revocation,
    limiter,
    current: () => ({ jwt, apiKey, assertion }),
    checks: () => [
      { name: 'store', ready: () => core.store.ping().then(() => true, () => false) },
      { name: 'revocation', ready: () => core.revocation.ready() },
      { name: 'jwks', ready: () => jwt?.ready() ?? true },
      { name: 'rateLimits', ready: () => limiter.connected() },
    ],
    retire: (_old: Runtime) => {
      // Authenticators replaced by a reload close once requests that started on them are done.
      const done = retired.splice(0);
      if (done.length) setTimeout(() => { for (const a of done) void a.close(); }, 30_000).unref();
    },
    close: async () => {
      unsubscribe();
      clearInterval(pruner);
      await apiKey?.close();
      jwt?.close();
      await limiter.close();
      await core.close();
    },
  };
}
