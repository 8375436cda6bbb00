import { createPublicKey, webcrypto, type KeyObject } from 'node:crypto';
import {
  decodeJwt,
  decodeProtectedHeader,
  errors,
  jwtVerify,
  type FlattenedJWSInput,
  type JWSHeaderParameters,
  type JWTPayload,
  type JWTVerifyOptions,
} from 'jose';
import { LRUCache } from 'lru-cache';
import type { Dispatcher } from 'undici';
import type { Clock } from '../clock.js';
import { systemClock } from '../clock.js';
import type { IssuerConfig, JwtConfig } from '../config/schema.js';
import type { ExternalKeys } from '../revocation/external-keys.js';
import { sha256Hex } from '../util/sha256.js';
import type { AuthContext, Authenticator, Credential, Identity } from './types.js';
import { JwksCache } from './jwks.js';
import { fromJoseError, JwtRejection, rejectToken, type JwtCheck, type JwtProblemCode } from './jose-errors.js';
import { formatRevocationId, parseRevocationId } from '../revocation/ids.js';

type VerifyKey = webcrypto.CryptoKey | KeyObject;
type KeyResolver = (header: JWSHeaderParameters, token: FlattenedJWSInput) => VerifyKey | Promise<VerifyKey>;

/** Tuning and wiring of a JwtAuthenticator beyond what the config file says. */
export interface JwtAuthenticatorOptions {
  /** undici dispatcher for JWKS fetches (tests, custom CA or proxy). */
  readonly dispatcher?: Dispatcher | undefined;
  /** Verified identities kept at most. Default 100 000. */
  readonly cacheMax?: number | undefined;
  /**
   * Longest time (ms) a verified token is served from the cache, whatever its `exp`:
   * bounds how long tokens signed by a key the issuer has withdrawn keep working, and
   * covers tokens without `exp`. Default 10 minutes.
   */
  readonly cacheMaxTtl?: number | undefined;
  /** How long (ms) a token that failed for a reason time cannot cure is refused from memory. Default 5 s. */
  readonly negativeTtl?: number | undefined;
  /** Rejections kept at most. Default 10 000. */
  readonly negativeMax?: number | undefined;
  /** Called with each failed JWKS fetch (the old set keeps serving). */
  readonly onJwksError?: ((issuer: string, err: unknown) => void) | undefined;
  /** Renders the fronted API's own revocation keys of a token (`revocation.externalKeys`). */
  readonly externalKeys?: ExternalKeys | undefined;
}

/** Cache counters for `/metrics`. */
export interface JwtStats {
  /** Requests answered from the identity cache, without crypto. */
  hits: number;
  /** Requests that ran (or joined) a verification. */
  misses: number;
  /** Requests that joined a verification already running for the same token. */
  coalesced: number;
  /** Requests refused from the negative cache. */
  negativeHits: number;
  /** Verifications run to completion, by outcome. */
  verified: number;
  rejected: number;
}

/** One check of `explain`, in evaluation order. */
export interface JwtCheckResult {
  readonly check: JwtCheck;
  readonly ok: boolean;
  readonly detail: string;
}

/** What `explain --token` prints: every check performed and the decision. */
export interface JwtExplanation {
  readonly decision: 'accept' | 'reject';
  /** The problem code when rejected. */
  readonly code?: JwtProblemCode | undefined;
  readonly detail?: string | undefined;
  /** Name of the configured issuer the token was matched to, if any. */
  readonly issuer?: string | undefined;
  readonly checks: readonly JwtCheckResult[];
  readonly identity?: Identity | undefined;
}

interface ClaimPath {
  readonly name: string;
  /** Dotted-path segments, when the name has dots (tried only if no top-level claim has the full name). */
  readonly parts: readonly string[] | undefined;
}

interface Issuer {
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

interface Cached {
  readonly identity: Identity;
  /** Clock time (ms) from which the token no longer verifies (or the cache cap). */
  readonly validUntil: number;
}

interface Refused {
  readonly code: JwtProblemCode;
  readonly check: JwtCheck;
  readonly detail: string;
  readonly until: number;
}

/** What `explain` collects while a token is checked. */
interface Report {
  readonly checks: JwtCheckResult[];
  issuer?: string;
}

type Trace = Report | undefined;

const SEGMENT = /^[A-Za-z0-9_-]+$/;
/** Header parameters that point at or carry a key: honouring them lets the token pick its own key. */
const KEY_BEARING_HEADERS = ['jwk', 'jku', 'x5u', 'x5c'] as const;
const CONTROL = /[\x00-\x1f\x7f]/;
const WHITESPACE = /\s/;
/** Failures that time or a JWKS refresh may cure are never negative-cached. */
const TRANSIENT: ReadonlySet<JwtCheck> = new Set<JwtCheck>(['key', 'nbf', 'iat']);
const HMAC_HASH: Readonly<Record<string, string>> = { HS256: 'SHA-256', HS384: 'SHA-384', HS512: 'SHA-512' };
/** Key types a PEM must have for each algorithm, checked at construction so a mismatch is a config error. */
const KEY_TYPE: Readonly<Record<string, readonly string[]>> = {
  RS256: ['rsa'], RS384: ['rsa'], RS512: ['rsa'],
  PS256: ['rsa', 'rsa-pss'], PS384: ['rsa', 'rsa-pss'], PS512: ['rsa', 'rsa-pss'],
  ES256: ['ec'], ES384: ['ec'], ES512: ['ec'],
  EdDSA: ['ed25519'], Ed25519: ['ed25519'],
};
const EC_CURVE: Readonly<Record<string, string>> = { ES256: 'prime256v1', ES384: 'secp384r1', ES512: 'secp521r1' };

function claimPath(name: string): ClaimPath {
  return { name, parts: name.includes('.') ? name.split('.') : undefined };
}

function readClaim(payload: JWTPayload, path: ClaimPath): unknown {
  if (Object.hasOwn(payload, path.name)) return payload[path.name];
  if (path.parts === undefined) return undefined;
  let value: unknown = payload;
  for (const part of path.parts) {
    if (typeof value !== 'object' || value === null || Array.isArray(value) || !Object.hasOwn(value, part)) return undefined;
    value = (value as Record<string, unknown>)[part];
  }
  return value;
}

/** A claim value as it will travel in a header: strings as they are, numbers in decimal. */
function claimString(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' && Number.isFinite(value)) {
    return Number.isInteger(value) ? BigInt(value).toString() : String(value);
  }
  return undefined;
}

function pass(trace: Trace, check: JwtCheck, detail: string): void {
  trace?.checks.push({ check, ok: true, detail });
}

function buildIssuer(
  config: IssuerConfig,
  jwt: JwtConfig,
  clock: Clock,
  options: JwtAuthenticatorOptions,
  jwksByUri: Map<string, JwksCache>,
): Issuer {
  const algorithms = [...config.algorithms];
  let key: KeyResolver;
  let jwks: JwksCache | undefined;
  if (config.secret !== undefined) {
    const bytes = new TextEncoder().encode(config.secret);
    // One CryptoKey per HMAC algorithm, imported now; jose would otherwise import the
    // raw bytes again on every verification.
    const keys = new Map<string, Promise<webcrypto.CryptoKey>>();
    for (const alg of algorithms) {
      const hmac = HMAC_HASH[alg];
      if (hmac === undefined) throw new TypeError(`issuer ${config.name}: a secret cannot verify ${alg}`);
      const imported = webcrypto.subtle.importKey('raw', bytes, { name: 'HMAC', hash: hmac }, false, ['verify']);
      imported.catch(() => undefined);
      keys.set(alg, imported);
    }
    key = (header) => keys.get(header.alg ?? '') ?? Promise.reject(new errors.JOSEAlgNotAllowed('"alg" (Algorithm) Header Parameter value not allowed'));
  } else if (config.publicKey !== undefined) {
    // createPublicKey would quietly derive the public half of a private key: refuse, a private key does not belong in this file.
    if (/PRIVATE KEY-----/.test(config.publicKey)) throw new TypeError(`issuer ${config.name}: publicKey holds a private key; configure the public key (SPKI PEM)`);
    const publicKey = createPublicKey({ key: config.publicKey, format: 'pem' });
    if (publicKey.type !== 'public') throw new TypeError(`issuer ${config.name}: publicKey must be a public key (SPKI PEM)`);
    for (const alg of algorithms) {
      const type = publicKey.asymmetricKeyType ?? '';
      const curve = publicKey.asymmetricKeyDetails?.namedCurve;
      if (!(KEY_TYPE[alg] ?? []).includes(type) || (EC_CURVE[alg] !== undefined && curve !== EC_CURVE[alg])) {
        throw new TypeError(`issuer ${config.name}: the ${type}${curve ? ` (${curve})` : ''} public key cannot verify ${alg}`);
      }
    }
    // jose converts the KeyObject to a CryptoKey once per algorithm and keeps it.
    key = () => publicKey;
  } else if (config.jwksUri !== undefined) {
    const uri = new URL(config.jwksUri).href;
    jwks = jwksByUri.get(uri);
    if (jwks === undefined) {
      const onError = options.onJwksError;
      jwks = new JwksCache({
        uri,
        timeout: jwt.jwksTimeout,
        cacheMaxAge: jwt.jwksCacheMaxAge,
        cooldown: jwt.jwksCooldown,
        clock,
        dispatcher: options.dispatcher,
        onError: onError ? (err) => onError(config.name, err) : undefined,
      });
      jwksByUri.set(uri, jwks);
    }
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

/**
 * Verifies bearer JWTs (docs/reference/request-pipeline.md, step 4) against the configured issuers with jose, and
 * keeps verified identities in an LRU so a repeated token costs one hash and one map
 * lookup: a cache hit returns the Identity synchronously, with no crypto.
 *
 * Rejections are `JwtRejection`s (GatewayError 401 `token-expired` when only the expiry
 * failed, `token-invalid` otherwise), thrown synchronously when answered from memory and
 * as a rejected promise when verification ran.
 */
export class JwtAuthenticator implements Authenticator {
  readonly kind = 'jwt' as const;
  readonly stats: JwtStats = { hits: 0, misses: 0, coalesced: 0, negativeHits: 0, verified: 0, rejected: 0 };
  /** JWKS caches by issuer name; issuers naming the same URI share one. */
  readonly jwks: ReadonlyMap<string, JwksCache>;

  readonly #config: JwtConfig;
  readonly #rankOf: (role: string) => number;
  readonly #clock: Clock;
  /** Issuers by their `iss`; the key `undefined` holds the issuer for tokens without `iss`. */
  readonly #issuers: ReadonlyMap<string | undefined, readonly Issuer[]>;
  readonly #jwksCaches: readonly JwksCache[];
  readonly #toleranceSeconds: number;
  readonly #cacheMaxTtl: number;
  readonly #negativeTtl: number;
  readonly #cache: LRUCache<string, Cached>;
  readonly #refused: LRUCache<string, Refused>;
  readonly #inflight = new Map<string, Promise<Identity>>();
  readonly #externalKeys: ExternalKeys | undefined;

  constructor(config: JwtConfig, rankOf: (role: string) => number, clock: Clock = systemClock, options: JwtAuthenticatorOptions = {}) {
    this.#config = config;
    this.#rankOf = rankOf;
    this.#clock = clock;
    this.#toleranceSeconds = config.clockTolerance / 1000;
    this.#cacheMaxTtl = options.cacheMaxTtl ?? 600_000;
    this.#negativeTtl = options.negativeTtl ?? 5_000;
    this.#externalKeys = options.externalKeys;
    const jwksByUri = new Map<string, JwksCache>();
    const byIss = new Map<string | undefined, Issuer[]>();
    const jwksByName = new Map<string, JwksCache>();
    for (const issuerConfig of config.issuers) {
      const issuer = buildIssuer(issuerConfig, config, clock, options, jwksByUri);
      const list = byIss.get(issuer.config.issuer);
      if (list) list.push(issuer);
      else byIss.set(issuer.config.issuer, [issuer]);
      if (issuer.jwks) jwksByName.set(issuer.name, issuer.jwks);
    }
    this.#issuers = byIss;
    this.jwks = jwksByName;
    this.#jwksCaches = [...jwksByUri.values()];
    this.#cache = new LRUCache<string, Cached>({ max: options.cacheMax ?? 100_000, ttlAutopurge: false });
    this.#refused = new LRUCache<string, Refused>({ max: options.negativeMax ?? 10_000, ttlAutopurge: false });
  }

  /** Fetches every JWKS once; resolves when all first attempts settled (see `ready()`). */
  async start(): Promise<void> {
    await Promise.all(this.#jwksCaches.map((c) => c.start()));
  }

  /** True when every JWKS issuer has a key set (issuers with a secret or PEM always are). */
  ready(): boolean {
    return this.#jwksCaches.every((c) => c.ready());
  }

  /** Stops JWKS refreshes and drops cached identities. */
  close(): void {
    for (const c of this.#jwksCaches) c.close();
    this.#cache.clear();
    this.#refused.clear();
  }

  authenticate(credential: Credential, _ctx?: AuthContext): Identity | Promise<Identity> {
    return this.verify(credential.value);
  }

  /**
   * Verifies one compact JWT. Returns the cached Identity synchronously on a hit;
   * otherwise a promise, shared by concurrent callers presenting the same token.
   */
  verify(token: string): Identity | Promise<Identity> {
    if (token.length > this.#config.maxTokenBytes) {
      throw rejectToken('size', `The token exceeds ${this.#config.maxTokenBytes} bytes.`);
    }
    const id = sha256Hex(token);
    const now = this.#clock.now();
    const cached = this.#cache.get(id);
    if (cached !== undefined) {
      if (now < cached.validUntil) {
        this.stats.hits++;
        return cached.identity;
      }
      this.#cache.delete(id);
    }
    const refused = this.#refused.get(id);
    if (refused !== undefined) {
      if (now < refused.until) {
        this.stats.negativeHits++;
        throw new JwtRejection(refused.code, refused.check, refused.detail);
      }
      this.#refused.delete(id);
    }
    this.stats.misses++;
    const running = this.#inflight.get(id);
    if (running !== undefined) {
      this.stats.coalesced++;
      return running;
    }
    const verification = this.#verifyAndCache(token, id).finally(() => this.#inflight.delete(id));
    this.#inflight.set(id, verification);
    return verification;
  }

  /**
   * Drops cached identities whose `revocationId` is this one (`jti:<jti>` or
   * `tok:<sha256>`). Returns how many were dropped.
   */
  evict(revocationId: string): number {
    // A `tok:` id's digest is the cache key itself.
    const parsed = parseRevocationId(revocationId);
    if (parsed?.kind === 'token') {
      const entry = this.#cache.peek(parsed.sha256);
      if (entry === undefined || entry.identity.revocationId !== revocationId) return 0;
      this.#cache.delete(parsed.sha256);
      return 1;
    }
    return this.#evictWhere((identity) => identity.revocationId === revocationId);
  }

  /** Drops every cached identity of this subject (any issuer). Returns how many. */
  evictSubject(subject: string): number {
    return this.#evictWhere((identity) => identity.subject === subject);
  }

  /** Runs every check on a token without the caches and reports each one. */
  async explain(token: string): Promise<JwtExplanation> {
    const report: Report = { checks: [] };
    try {
      const { identity } = await this.#check(token, report);
      return { decision: 'accept', issuer: report.issuer, checks: report.checks, identity };
    } catch (err) {
      const rejection = fromJoseError(err);
      report.checks.push({ check: rejection.check, ok: false, detail: rejection.message });
      return { decision: 'reject', code: rejection.code, detail: rejection.message, issuer: report.issuer, checks: report.checks };
    }
  }

  #evictWhere(match: (identity: Identity) => boolean): number {
    // Revocations are rare next to requests: a scan beats keeping reverse indexes up to date on every insert.
    const doomed: string[] = [];
    for (const [id, entry] of this.#cache.entries()) if (match(entry.identity)) doomed.push(id);
    for (const id of doomed) this.#cache.delete(id);
    return doomed.length;
  }

  async #verifyAndCache(token: string, id: string): Promise<Identity> {
    try {
      const { identity, validUntil } = await this.#check(token, undefined, id);
      this.stats.verified++;
      const now = this.#clock.now();
      const until = Math.min(validUntil, now + this.#cacheMaxTtl);
      if (until > now) this.#cache.set(id, { identity, validUntil: until }, { ttl: until - now });
      return identity;
    } catch (err) {
      this.stats.rejected++;
      const rejection = fromJoseError(err);
      if (!TRANSIENT.has(rejection.check) && this.#negativeTtl > 0) {
        const until = this.#clock.now() + this.#negativeTtl;
        this.#refused.set(id, { code: rejection.code, check: rejection.check, detail: rejection.message, until }, { ttl: this.#negativeTtl });
      }
      throw rejection;
    }
  }

  /** The whole verification; `trace` collects passed checks for `explain`. */
  async #check(token: string, trace: Trace, id?: string): Promise<{ identity: Identity; validUntil: number }> {
    const max = this.#config.maxTokenBytes;
    if (token.length > max) throw rejectToken('size', `The token exceeds ${max} bytes.`);
    pass(trace, 'size', `${token.length} bytes, limit ${max}`);

    const segments = token.split('.');
    if (segments.length === 5) throw rejectToken('format', 'Encrypted tokens (JWE) are not accepted.');
    if (segments.length !== 3) throw rejectToken('format', `The token has ${segments.length} segments; a signed JWT has 3.`);
    if (segments[2] === '') throw rejectToken('format', 'The token has no signature.');
    if (!segments.every((s) => SEGMENT.test(s))) throw rejectToken('format', 'The token contains characters outside base64url.');
    let header: JWSHeaderParameters;
    let unverified: JWTPayload;
    try {
      header = decodeProtectedHeader(token) as JWSHeaderParameters;
      unverified = decodeJwt(token);
    } catch (err) {
      throw rejectToken('format', 'The token is malformed.', err);
    }
    pass(trace, 'format', 'compact JWS: three base64url segments, JSON header and claims');

    for (const name of KEY_BEARING_HEADERS) {
      if (Object.hasOwn(header, name)) throw rejectToken('header', `The token header carries "${name}"; keys named or embedded by the token are never used.`);
    }
    if (Object.hasOwn(header, 'crit')) throw rejectToken('header', 'The token header declares critical extensions, and none is understood.');
    if (typeof header.alg !== 'string') throw rejectToken('header', 'The token header has no algorithm.');
    pass(trace, 'header', `alg ${header.alg}${header.kid !== undefined ? `, kid ${JSON.stringify(header.kid)}` : ''}; no jwk/jku/x5u/x5c/crit`);

    // The unverified `iss` only picks which issuer's keys and rules apply; jose checks it again after the signature.
    const iss = unverified.iss;
    // A token without `iss` can only match an issuer configured without one (never the reverse).
    const candidates = typeof iss === 'string' ? this.#issuers.get(iss) : iss === undefined ? this.#issuers.get(undefined) : undefined;
    if (candidates === undefined) throw rejectToken('issuer', 'The token was not issued by a configured issuer.');
    const issuer = candidates.find((c) => c.algorithms.has(header.alg!)) ?? candidates[0]!;
    if (trace) trace.issuer = issuer.name;
    pass(trace, 'issuer', `iss ${JSON.stringify(iss)} is issuer ${issuer.name}`);

    if (!issuer.algorithms.has(header.alg)) throw rejectToken('algorithm', "The token's algorithm is not accepted for its issuer.");
    pass(trace, 'algorithm', `${header.alg} in [${[...issuer.algorithms].join(', ')}]`);

    const nowMs = this.#clock.now();
    const options: JWTVerifyOptions = { ...issuer.options, currentDate: new Date(nowMs) };
    let payload: JWTPayload;
    try {
      payload = (await this.#jwtVerify(token, issuer, options)).payload;
    } catch (err) {
      const rejection = fromJoseError(err);
      if (trace && rejection.check !== 'key' && rejection.check !== 'signature' && rejection.check !== 'algorithm' && rejection.check !== 'format') {
        pass(trace, 'key', 'found');
        pass(trace, 'signature', 'valid');
      }
      // jose stops at the expiry; the token is `token-expired` only if nothing after it fails too.
      if (rejection.code === 'token-expired' && err instanceof errors.JWTExpired) {
        this.#identity(err.payload as JWTPayload, issuer, nowMs, undefined, id ?? sha256Hex(token), token);
      }
      throw rejection;
    }
    if (trace) {
      pass(trace, 'key', issuer.jwks ? `from ${issuer.jwks.uri}` : issuer.config.secret !== undefined ? 'shared secret' : 'configured public key');
      pass(trace, 'signature', 'valid');
      if (issuer.config.typ !== undefined) pass(trace, 'typ', `typ ${String(header.typ)}`);
      pass(trace, 'required-claims', `present: ${(issuer.options.requiredClaims ?? []).join(', ') || '(none)'}`);
      pass(trace, 'iss', `iss ${iss}`);
      if (issuer.config.audience !== undefined) pass(trace, 'aud', `aud ${JSON.stringify(payload.aud)}`);
      pass(trace, 'nbf', payload.nbf === undefined ? 'absent' : `nbf ${new Date(payload.nbf * 1000).toISOString()}`);
      pass(trace, 'exp', payload.exp === undefined ? 'absent (not required)' : `exp ${new Date(payload.exp * 1000).toISOString()}`);
      if (issuer.maxTokenAge !== undefined) pass(trace, 'max-age', `issued ${Math.floor(nowMs / 1000) - (payload.iat ?? 0)}s ago, limit ${issuer.maxTokenAge}s`);
    }
    const identity = this.#identity(payload, issuer, nowMs, trace, id ?? sha256Hex(token), token);
    return { identity, validUntil: this.#validUntil(payload, issuer, nowMs) };
  }

  async #jwtVerify(token: string, issuer: Issuer, options: JWTVerifyOptions) {
    try {
      return await jwtVerify(token, issuer.key, options);
    } catch (err) {
      // A JWKS with several keys that fit a token without `kid`: try each, as jose leaves that to the caller.
      if (!(err instanceof errors.JWKSMultipleMatchingKeys)) throw err;
      for await (const candidate of err) {
        try {
          return await jwtVerify(token, candidate, options);
        } catch (inner) {
          if (!(inner instanceof errors.JWSSignatureVerificationFailed)) throw inner;
        }
      }
      throw err;
    }
  }

  /** Checks that come after jose's, then maps claims to the Identity. */
  #identity(payload: JWTPayload, issuer: Issuer, nowMs: number, trace: Trace, tokenHash: string, token: string): Identity {
    const nowSeconds = Math.floor(nowMs / 1000);
    const { iat, nbf, exp } = payload;
    if (iat !== undefined && iat > nowSeconds + this.#toleranceSeconds) throw rejectToken('iat', 'The token claims to be issued in the future.');
    pass(trace, 'iat', iat === undefined ? 'absent' : `iat ${new Date(iat * 1000).toISOString()}`);

    const subjectValue = readClaim(payload, issuer.subject);
    const subject = claimString(subjectValue);
    if (subject === undefined || subject === '') throw rejectToken('claims', `The token has no usable subject claim "${issuer.subject.name}".`);

    let role = this.#role(readClaim(payload, issuer.role));
    if (role === undefined) throw rejectToken('claims', `The token's role claim "${issuer.role.name}" is not a string.`);
    if (role === '') role = issuer.config.defaultRole ?? '';

    const scopes = this.#scopes(readClaim(payload, issuer.scopes));
    if (scopes === undefined) throw rejectToken('claims', `The token's scope claim "${issuer.scopes.name}" is not a space-separated string or a list of strings.`);

    if (CONTROL.test(subject) || CONTROL.test(role)) throw rejectToken('claims', 'The token carries control characters in its subject or role.');

    const aud = payload.aud;
    let audiences: readonly string[];
    if (aud === undefined) audiences = [];
    else if (typeof aud === 'string') audiences = [aud];
    else if (Array.isArray(aud) && aud.every((a) => typeof a === 'string')) audiences = aud;
    else throw rejectToken('claims', 'The token\'s "aud" claim is not a string or a list of strings.');

    const jti = payload.jti;
    let revocationId: string;
    if (jti === undefined) revocationId = formatRevocationId({ kind: 'token', sha256: tokenHash });
    else {
      const jtiString = claimString(jti);
      if (jtiString === undefined || jtiString === '') throw rejectToken('claims', 'The token\'s "jti" claim is not a string.');
      revocationId = formatRevocationId({ kind: 'jti', jti: jtiString });
    }
    pass(trace, 'claims', `subject ${JSON.stringify(subject)}, role ${JSON.stringify(role)}, scopes [${scopes.join(' ')}]`);

    return Object.freeze({
      method: 'jwt',
      subject,
      role,
      roleRank: role === '' ? -1 : this.#rankOf(role),
      scopes: Object.freeze(scopes),
      scopesHeader: scopes.join(' '),
      keyId: undefined,
      audiences: Object.freeze([...audiences]),
      allowIp: undefined,
      issuedAt: (iat ?? nbf ?? 0) * 1000,
      expiresAt: exp === undefined ? undefined : exp * 1000,
      revocationId,
      externalRevocationKeys: this.#externalKeys?.({ token, sha256: tokenHash, jti: claimString(jti), sub: claimString(payload.sub) }),
      issuer: issuer.name,
    } satisfies Identity);
  }

  /** Role claim → role name; a list picks its highest-ranked role. Undefined when malformed. */
  #role(value: unknown): string | undefined {
    if (value === undefined || value === null) return '';
    if (Array.isArray(value)) {
      let best = '';
      let bestRank = Number.NEGATIVE_INFINITY;
      for (const entry of value) {
        const name = claimString(entry);
        if (name === undefined) return undefined;
        const rank = this.#rankOf(name);
        if (rank > bestRank) {
          best = name;
          bestRank = rank;
        }
      }
      return best;
    }
    return claimString(value);
  }

  /** Scope claim → list; undefined when malformed (a list entry with spaces would read as two scopes). */
  #scopes(value: unknown): string[] | undefined {
    if (value === undefined || value === null) return [];
    if (typeof value === 'string') {
      if (CONTROL.test(value.replace(/[\t\n\r]/g, ' '))) return undefined;
      return value.split(/\s+/).filter((s) => s !== '');
    }
    if (!Array.isArray(value)) return undefined;
    const scopes: string[] = [];
    for (const entry of value) {
      const scope = claimString(entry);
      if (scope === undefined || scope === '' || WHITESPACE.test(scope) || CONTROL.test(scope)) return undefined;
      scopes.push(scope);
    }
    return scopes;
  }

  /** First clock time (ms) at which jose would refuse this token, mirroring its rounding. */
  #validUntil(payload: JWTPayload, issuer: Issuer, nowMs: number): number {
    let until = Number.POSITIVE_INFINITY;
    // jose: expired when exp <= floor(now/1000) - tolerance.
    if (payload.exp !== undefined) until = Math.ceil(payload.exp + this.#toleranceSeconds) * 1000;
    // jose: too old when floor(now/1000) - iat - tolerance > maxTokenAge.
    if (issuer.maxTokenAge !== undefined && payload.iat !== undefined) {
      until = Math.min(until, (Math.floor(payload.iat + issuer.maxTokenAge + this.#toleranceSeconds) + 1) * 1000);
    }
    return Math.min(until, nowMs + this.#cacheMaxTtl);
  }
}

/**
 * `portcullis explain --token`: verifies a token against `config` without a running
 * gateway (fetching a JWKS if the token's issuer uses one) and lists every check.
 */
export async function explainJwt(
  token: string,
  config: JwtConfig,
  clock: Clock = systemClock,
  options: JwtAuthenticatorOptions & { readonly rankOf?: ((role: string) => number) | undefined } = {},
): Promise<JwtExplanation> {
  const authenticator = new JwtAuthenticator(config, options.rankOf ?? (() => -1), clock, options);
  try {
    return await authenticator.explain(token);
  } finally {
    authenticator.close();
  }
}
