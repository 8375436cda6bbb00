import type { Dispatcher } from 'undici';
import type { Clock } from '../../clock.js';
import { systemClock } from '../../clock.js';
import type { JwtConfig } from '../../config/schema.js';
import type { ExternalKeys } from '../../revocation/external-keys.js';
import { parseRevocationId } from '../../revocation/ids.js';
import { sha256Hex } from '../../util/sha256.js';
import type { AuthContext, Authenticator, Credential, Identity } from '../types.js';
import { VerifiedCache } from '../verified-cache.js';
import { identityFromClaims, type ClaimRules } from './claims.js';
import { checkHeader, checkSize, decodeCompact, pickIssuer, validUntil, verifySigned, type IssuersByIss } from './checks.js';
import { buildIssuer, type Issuer } from './issuer.js';
import type { JwksCache } from './jwks.js';
import { fromJoseError, JwtRejection, rejectToken, type JwtCheck, type JwtProblemCode } from './jose-errors.js';
import { traceVerified, type JwtExplanation, type Report, type Trace } from './trace.js';

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

/** Failures that time or a JWKS refresh may cure are never negative-cached. */
const TRANSIENT: ReadonlySet<JwtCheck> = new Set<JwtCheck>(['key', 'nbf', 'iat']);

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
  readonly #clock: Clock;
  /** Issuers by their `iss`; the key `undefined` holds the issuer for tokens without `iss`. */
  readonly #issuers: IssuersByIss;
  readonly #jwksCaches: readonly JwksCache[];
  readonly #toleranceSeconds: number;
  readonly #rules: ClaimRules;
  readonly #cacheMaxTtl: number;
  readonly #negativeTtl: number;
  readonly #cache: VerifiedCache<Cached, Refused>;

  constructor(config: JwtConfig, rankOf: (role: string) => number, clock: Clock = systemClock, options: JwtAuthenticatorOptions = {}) {
    this.#config = config;
    this.#clock = clock;
    this.#toleranceSeconds = config.clockTolerance / 1000;
    this.#cacheMaxTtl = options.cacheMaxTtl ?? 600_000;
    this.#negativeTtl = options.negativeTtl ?? 5_000;
    this.#rules = { toleranceSeconds: this.#toleranceSeconds, rankOf, externalKeys: options.externalKeys };
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
    this.#cache = new VerifiedCache<Cached, Refused>({ max: options.cacheMax ?? 100_000, refusalMax: options.negativeMax ?? 10_000, now: () => clock.now(), until: (c) => c.validUntil });
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
      // The entry's TTL stops where the token does; this makes the boundary exact.
      if (now < cached.validUntil) {
        this.stats.hits++;
        return cached.identity;
      }
      this.#cache.delete(id);
    }
    const refused = this.#cache.refusal(id);
    if (refused !== undefined) {
      if (now < refused.until) {
        this.stats.negativeHits++;
        throw new JwtRejection(refused.code, refused.check, refused.detail);
      }
      this.#cache.deleteRefusal(id);
    }
    this.stats.misses++;
    // One signature has up to four spellings (the last character's spare bits, which
    // decoding ignores): revocation by the token's text (logout, the fronted API's own
    // `{token}` keys) would miss the other three. Only the canonical one is a token.
    if (!canonicalSignature(token)) throw rejectToken('signature', 'The token signature is not canonical base64url (its last character has bits set that encode nothing).');
    const running = this.#cache.running(id);
    if (running !== undefined) {
      this.stats.coalesced++;
      return running;
    }
    return this.#cache.track(id, this.#verifyAndCache(token, id));
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
    const doomed = this.#cache.keysWhere((entry) => match(entry.identity));
    for (const id of doomed) this.#cache.delete(id);
    return doomed.length;
  }

  async #verifyAndCache(token: string, id: string): Promise<Identity> {
    try {
      const { identity, validUntil } = await this.#check(token, undefined, id);
      this.stats.verified++;
      const now = this.#clock.now();
      const until = Math.min(validUntil, now + this.#cacheMaxTtl);
      if (until > now) this.#cache.set(id, { identity, validUntil: until });
      return identity;
    } catch (err) {
      this.stats.rejected++;
      const rejection = fromJoseError(err);
      if (!TRANSIENT.has(rejection.check) && this.#negativeTtl > 0) {
        const until = this.#clock.now() + this.#negativeTtl;
        this.#cache.refuse(id, { code: rejection.code, check: rejection.check, detail: rejection.message, until }, this.#negativeTtl);
      }
      throw rejection;
    }
  }

  /** The whole verification; `trace` collects passed checks for `explain`. */
  async #check(token: string, trace: Trace, id?: string): Promise<{ identity: Identity; validUntil: number }> {
    checkSize(token, this.#config.maxTokenBytes, trace);
    const { header, unverified } = decodeCompact(token, trace);
    checkHeader(header, trace);
    const issuer = pickIssuer(this.#issuers, unverified.iss, header.alg, trace);
    const nowMs = this.#clock.now();
    const payload = await verifySigned(token, issuer, nowMs, trace, this.#rules, id);
    if (trace) traceVerified(trace, issuer, header, payload, nowMs);
    const identity = identityFromClaims(payload, issuer, this.#rules, nowMs, trace, id ?? sha256Hex(token), token);
    return { identity, validUntil: validUntil(payload, issuer, nowMs, this.#toleranceSeconds, this.#cacheMaxTtl) };
  }
}

const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** Whether a compact JWS's signature segment is in canonical base64url: no spare bit set in its last character (a character outside base64url is left to the format check). */
export function canonicalSignature(token: string): boolean {
  const rest = (token.length - token.lastIndexOf('.') - 1) % 4;
  if (rest === 0) return true;
  const v = BASE64URL.indexOf(token.charAt(token.length - 1));
  // Not base64url at all: the format check refuses it (as malformed, which it is).
  if (v < 0) return true;
  // 2 characters left over carry 12 bits for one byte (4 spare), 3 carry 18 for two (2 spare).
  return (v & (rest === 2 ? 0x0f : 0x03)) === 0;
}
