import { createPublicKey, webcrypto, type KeyObject } from 'node:crypto';
import { errors, type FlattenedJWSInput, type JWSHeaderParameters, type JWTVerifyOptions } from 'jose';
import type { Dispatcher } from 'undici';
import type { Clock } from '../../clock.js';
import type { IssuerConfig, JwtConfig } from '../../config/schema.js';
import { claimPath, type ClaimPath } from './claims.js';
import { JwksCache } from './jwks.js';

type VerifyKey = webcrypto.CryptoKey | KeyObject;
type KeyResolver = (header: JWSHeaderParameters, token: FlattenedJWSInput) => VerifyKey | Promise<VerifyKey>;

/** What a JWKS-backed issuer needs beyond its config. */
export interface IssuerWiring {
  readonly dispatcher?: Dispatcher | undefined;
  readonly onJwksError?: ((issuer: string, err: unknown) => void) | undefined;
}

/** A configured issuer, compiled once: its keys, algorithms, jose options and claim names. */
export interface Issuer {
  readonly config: IssuerConfig;
  readonly name: string;
  readonly algorithms: ReadonlySet<string>;
  readonly key: KeyResolver;
  readonly jwks: JwksCache | undefined;
  readonly options: JWTVerifyOptions;
  readonly subject: ClaimPath;
  readonly role: ClaimPath;
  readonly scopes: ClaimPath;
  /** `maxTokenAge` in seconds, as jose counts it. */
  readonly maxTokenAge: number | undefined;
}

const HMAC_HASH: Readonly<Record<string, string>> = { HS256: 'SHA-256', HS384: 'SHA-384', HS512: 'SHA-512' };
/** Key types a PEM must have for each algorithm, checked at construction so a mismatch is a config error. */
const KEY_TYPE: Readonly<Record<string, readonly string[]>> = {
  RS256: ['rsa'], RS384: ['rsa'], RS512: ['rsa'],
  PS256: ['rsa', 'rsa-pss'], PS384: ['rsa', 'rsa-pss'], PS512: ['rsa', 'rsa-pss'],
  ES256: ['ec'], ES384: ['ec'], ES512: ['ec'],
  EdDSA: ['ed25519'], Ed25519: ['ed25519'],
};
const EC_CURVE: Readonly<Record<string, string>> = { ES256: 'prime256v1', ES384: 'secp384r1', ES512: 'secp521r1' };

/** Compiles one issuer; issuers naming the same JWKS URI share one cache in `jwksByUri`. Throws on a config error. */
export function buildIssuer(
  config: IssuerConfig,
  jwt: JwtConfig,
  clock: Clock,
  options: IssuerWiring,
  jwksByUri: Map<string, JwksCache>,
): Issuer {
  const algorithms = [...config.algorithms];
  let key: KeyResolver;
  let jwks: JwksCache | undefined;
  if (config.secret !== undefined) key = secretResolver(config.name, config.secret, algorithms);
  else if (config.publicKey !== undefined) key = publicKeyResolver(config.name, config.publicKey, algorithms);
  else if (config.jwksUri !== undefined) {
    jwks = sharedJwks(config, jwt, clock, options, jwksByUri);
    key = jwks.getKey;
  } else {
    throw new TypeError(`issuer ${config.name}: set one of secret, publicKey or jwksUri`);
  }

  const requiredClaims = [...(config.requireExp ? ['exp'] : []), ...config.requiredClaims];
  const verifyOptions: JWTVerifyOptions = {
    algorithms,
    ...(config.issuer !== undefined ? { issuer: config.issuer } : {}),
    requiredClaims,
    clockTolerance: jwt.clockTolerance / 1000,
    // No critical header extension is understood: any `crit` fails.
    crit: {},
    ...(config.audience !== undefined ? { audience: config.audience } : {}),
    ...(config.maxTokenAge !== undefined ? { maxTokenAge: config.maxTokenAge / 1000 } : {}),
    ...(config.typ !== undefined ? { typ: config.typ } : {}),
  };
  return {
    config,
    name: config.name,
    algorithms: new Set(algorithms),
    key,
    jwks,
    options: verifyOptions,
    subject: claimPath(config.claims.subject),
    role: claimPath(config.claims.role),
    scopes: claimPath(config.claims.scopes),
    maxTokenAge: config.maxTokenAge === undefined ? undefined : config.maxTokenAge / 1000,
  };
}

/** One CryptoKey per HMAC algorithm, imported now: jose would otherwise import the raw bytes on every verification. */
function secretResolver(name: string, secret: string, algorithms: readonly string[]): KeyResolver {
  const bytes = new TextEncoder().encode(secret);
  const keys = new Map<string, Promise<webcrypto.CryptoKey>>();
  for (const alg of algorithms) {
    const hmac = HMAC_HASH[alg];
    if (hmac === undefined) throw new TypeError(`issuer ${name}: a secret cannot verify ${alg}`);
    const imported = webcrypto.subtle.importKey('raw', bytes, { name: 'HMAC', hash: hmac }, false, ['verify']);
    imported.catch(() => undefined);
    keys.set(alg, imported);
  }
  return (header) => keys.get(header.alg ?? '') ?? Promise.reject(new errors.JOSEAlgNotAllowed('"alg" (Algorithm) Header Parameter value not allowed'));
}

/** A PEM public key checked against every allowed algorithm (type and curve). */
function publicKeyResolver(name: string, pem: string, algorithms: readonly string[]): KeyResolver {
  // createPublicKey would quietly derive the public half of a private key: refuse, a private key does not belong in this file.
  if (/PRIVATE KEY-----/.test(pem)) throw new TypeError(`issuer ${name}: publicKey holds a private key; configure the public key (SPKI PEM)`);
  const publicKey = createPublicKey({ key: pem, format: 'pem' });
  if (publicKey.type !== 'public') throw new TypeError(`issuer ${name}: publicKey must be a public key (SPKI PEM)`);
  for (const alg of algorithms) {
    const type = publicKey.asymmetricKeyType ?? '';
    const curve = publicKey.asymmetricKeyDetails?.namedCurve;
    if (!(KEY_TYPE[alg] ?? []).includes(type) || (EC_CURVE[alg] !== undefined && curve !== EC_CURVE[alg])) {
      throw new TypeError(`issuer ${name}: the ${type}${curve ? ` (${curve})` : ''} public key cannot verify ${alg}`);
    }
  }
  // jose converts the KeyObject to a CryptoKey once per algorithm and keeps it.
  return () => publicKey;
}

/** The JWKS cache of the issuer's URI, shared by every issuer naming the same one. */
function sharedJwks(config: IssuerConfig, jwt: JwtConfig, clock: Clock, options: IssuerWiring, jwksByUri: Map<string, JwksCache>): JwksCache {
  const uri = new URL(config.jwksUri!).href;
  const known = jwksByUri.get(uri);
  if (known !== undefined) return known;
  const onError = options.onJwksError;
  const jwks = new JwksCache({
    uri,
    timeout: jwt.jwksTimeout,
    cacheMaxAge: jwt.jwksCacheMaxAge,
    cooldown: jwt.jwksCooldown,
    clock,
    dispatcher: options.dispatcher,
    onError: onError ? (err) => onError(config.name, err) : undefined,
  });
  jwksByUri.set(uri, jwks);
  return jwks;
}
