import { systemClock, type Clock } from '../../clock.js';
import type { ApiKeysConfig } from '../../config/schema.js';
import { GatewayError } from '../../http/problem.js';
import { AttemptLimiter } from '../../util/attempt-limiter.js';
import { looksNative, parseKey, type ParsedKey } from '../../keys/format.js';
import { argon2Verifier, uuidBytesSha256, type SecretVerifier } from '../../keys/hash.js';
import { effectiveEnd } from '../../keys/lifetime.js';
import { formatRevocationId, keyRevocationId } from '../../revocation/ids.js';
import type { KeyRecord, KeyRepository } from '../../store/types.js';
import { LruMap } from '../../util/lru-map.js';
import { sha256Hex } from '../../util/sha256.js';
import { safeEqual } from '../../util/timing-safe.js';
import type { AuthContext, Authenticator, Credential, Identity } from '../types.js';
import { KeyCache } from './key-cache.js';
import { IdentityBuilder } from './identity.js';
import { LastUsedBatch } from './last-used.js';
import { SharedReads } from './shared-reads.js';
import { VerificationLimiter } from './verification-limiter.js';
import type { ApiKeyAuthenticatorOptions, ApiKeyStats } from './options.js';

export type { ApiKeyAuthenticatorOptions, ApiKeyStats } from './options.js';

const INVALID_DETAIL = 'The API key is not valid.';
const MIN_LEGACY = 8;
const MAX_KEY = 8192;
// Printable ASCII without whitespace: anything else cannot be a key the import accepted.
const LEGACY_SHAPE = /^[\x21-\x7e]+$/;

const keyInvalid = (detail = INVALID_DETAIL): GatewayError => new GatewayError('key-invalid', detail);

/**
 * Cache key of a presented key: its SHA-256 hex, for an imported key exactly the store's
 * `sha256`, so `legacy:<hex>` names its cache entry (and identity) without an index.
 */
const digestOf = sha256Hex;

/**
 * API key authenticator (docs/reference/api-keys.md). Hot path: a SHA-256 digest of the presented key keys
 * an LRU of verified identities — a hit returns synchronously with no store access and no
 * argon2. Misses parse the key (malformed or checksum failure: 401 without the store),
 * share one verification per distinct key among concurrent requests, look the key up
 * (by id, one read shared by every secret presented for that id meanwhile; or by digest
 * for imported legacy keys), and run argon2 under a concurrency
 * limit. Wrong secrets are remembered briefly (negative cache) and counted per key id and
 * per client address (see AttemptLimiter): a client past `failedAttempts.max` gets 429
 * without argon2, and a key id past it admits only clients that have not failed, so
 * forgeries from elsewhere never lock its holder out. A key that once verified here is
 * "proven": later re-verifications (after the identity cache entry expires) re-read the
 * record but skip argon2 and the failure limits.
 *
 * `authenticate` may throw synchronously (malformed key, negative cache, rate limit):
 * call it inside `try` and `await` only when it returns a Promise.
 */
export class ApiKeyAuthenticator implements Authenticator {
  readonly kind = 'apiKey' as const;
  readonly stats: ApiKeyStats = {
    cacheHits: 0,
    cacheMisses: 0,
    coalesced: 0,
    negativeHits: 0,
    storeLookups: 0,
    sharedLookups: 0,
    verifications: 0,
    provenReuses: 0,
    rateLimited: 0,
    overloaded: 0,
    malformed: 0,
  };

  readonly #store: KeyRepository;
  readonly #prefix: string;
  readonly #clock: Clock;
  readonly #verifier: SecretVerifier;
  readonly #cacheTtl: number;
  readonly #negativeTtl: number;
  readonly #provenTtl: number;
  /** Verified identities and refusals by key digest, indexed for evictions. */
  readonly #keys: KeyCache;
  readonly #proven: LruMap<string>;
  readonly #attempts: AttemptLimiter;
  readonly #limiter: VerificationLimiter;
  readonly #identities: IdentityBuilder;
  readonly #lastUsed: LastUsedBatch;
  readonly #reads = new SharedReads<KeyRecord | undefined>();
  #closed = false;

  constructor(store: KeyRepository, config: ApiKeysConfig, rank: (role: string) => number, clock: Clock = systemClock, options: ApiKeyAuthenticatorOptions = {}) {
    this.#store = store;
    this.#prefix = config.prefix;
    this.#identities = new IdentityBuilder(rank);
    this.#clock = clock;
    this.#verifier = options.verifier ?? argon2Verifier;
    this.#cacheTtl = config.cache.ttl;
    this.#negativeTtl = config.negativeCacheTtl;
    this.#provenTtl = options.provenTtl ?? 86_400_000;
    const limiterMax = options.limiterMax ?? 100_000;
    const now = (): number => clock.now();
    this.#keys = new KeyCache(config.cache.max, limiterMax, now);
    this.#proven = new LruMap<string>(config.cache.max, this.#provenTtl, now);
    this.#attempts = new AttemptLimiter(config.failedAttempts, now, limiterMax);
    this.#limiter = new VerificationLimiter(config.maxConcurrentVerifications, config.verificationQueue, (id) => this.#attempts.underAttack(id));
    this.#lastUsed = new LastUsedBatch(store, config.lastUsedInterval, options.onLastUsedError);
  }

  /** argon2 verifications running and waiting right now. */
  get verificationLoad(): { active: number; queued: number } {
    return { active: this.#limiter.active, queued: this.#limiter.queued };
  }

  authenticate(credential: Credential, ctx: AuthContext): Identity | Promise<Identity> {
    const value = credential.value;
    const digest = digestOf(value);
    const hit = this.#keys.entries.get(digest);
    if (hit !== undefined) {
      const now = this.#clock.now();
      // The entry's TTL already stops at the key's end; this makes the boundary exact.
      const end = hit.expiresAt;
      if (end === undefined || now < end) {
        this.stats.cacheHits++;
        this.#lastUsed.record(hit.keyId!, now);
        return hit;
      }
      this.#keys.entries.delete(digest);
    }
    return this.#miss(value, digest, ctx.clientIp);
  }

  #miss(value: string, digest: string, clientIp: string): Identity | Promise<Identity> {
    let parsed: ParsedKey | null = null;
    if (looksNative(value, this.#prefix)) {
      parsed = parseKey(value, this.#prefix);
      if (parsed === null) {
        this.stats.malformed++;
        throw keyInvalid('The API key is malformed (bad format or checksum).');
      }
    } else if (value.length < MIN_LEGACY || value.length > MAX_KEY || !LEGACY_SHAPE.test(value)) {
      this.stats.malformed++;
      throw keyInvalid('The API key is malformed.');
    }
    const refused = this.#keys.entries.refusal(digest);
    if (refused !== undefined) {
      this.stats.negativeHits++;
      throw refused;
    }
    this.stats.cacheMisses++;
    const running = this.#keys.entries.running(digest);
    if (running !== undefined) {
      this.stats.coalesced++;
      return running;
    }
    // Limited clients are refused here, synchronously: no store, no argon2. A key proven
    // before skips the limits (its holder must not wait on anyone's failures).
    if (parsed === null) this.#checkAttempts(undefined, clientIp);
    else if (!this.#proven.has(digest)) this.#checkAttempts(parsed.id, clientIp);
    return this.#keys.entries.track(digest, parsed === null ? this.#verifyLegacy(value, digest, clientIp) : this.#verifyNative(parsed, digest, clientIp));
  }

  async #verifyNative(parsed: ParsedKey, digest: string, clientIp: string): Promise<Identity> {
    const epoch = this.#keys.epoch;
    const proven = this.#proven.get(digest);
    const record = await this.#reads.read(parsed.id, epoch, () => this.#lookup(() => this.#store.getKey(parsed.id)), this.#joinedRead);
    if (record === undefined || record.secretHash === null) {
      this.#fail(undefined, clientIp, 1);
      throw this.#refuse(digest, keyInvalid());
    }
    if (proven !== undefined && safeEqual(proven, record.secretHash)) {
      this.stats.provenReuses++;
    } else {
      // Count the attempt before running argon2 so a concurrent burst cannot overshoot the limit.
      this.#checkAttempts(parsed.id, clientIp);
      this.#fail(parsed.id, clientIp, 1);
      let ok: boolean;
      try {
        ok = await this.bounded(parsed.id, () => this.#verifier.verify(record.secretHash!, parsed.secret));
      } catch (err) {
        // Overload or verifier failure: not the client's failed attempt.
        this.#fail(parsed.id, clientIp, -1);
        throw err;
      }
      if (!ok) throw this.#refuse(digest, keyInvalid());
      this.#fail(parsed.id, clientIp, -1);
      this.#proven.set(digest, record.secretHash);
    }
    return this.#accept(record, digest, epoch);
  }

  async #verifyLegacy(value: string, digest: string, clientIp: string): Promise<Identity> {
    const epoch = this.#keys.epoch;
    // The digest is the key's SHA-256 in hex: what the store holds for keys imported with
    // `digestOf: key`. A UUID may also have been imported by the digest of its 16 bytes.
    let stored = digest;
    let record = await this.#lookup(() => this.#store.getKeyBySha256(digest));
    const uuidDigest = record === undefined ? uuidBytesSha256(value) : undefined;
    if (uuidDigest !== undefined) {
      stored = uuidDigest;
      record = await this.#lookup(() => this.#store.getKeyBySha256(uuidDigest));
    }
    if (record === undefined || record.sha256 === null || !safeEqual(record.sha256, stored)) {
      this.#fail(undefined, clientIp, 1);
      throw this.#refuse(digest, keyInvalid());
    }
    return this.#accept(record, digest, epoch);
  }

  /**
   * Runs one argon2 verification for `keyId` in the bounded, fair queue (refresh tokens'
   * too, with their own judge of a key id under attack).
   */
  bounded<T>(keyId: string, run: () => Promise<T>, attacked?: (keyId: string) => boolean): Promise<T> {
    return this.#limiter.run(keyId, run, this.stats, attacked);
  }

  readonly #joinedRead = (): void => {
    this.stats.sharedLookups++;
  };

  async #lookup(fn: () => Promise<KeyRecord | undefined>): Promise<KeyRecord | undefined> {
    this.stats.storeLookups++;
    try {
      return await fn();
    } catch (err) {
      throw new GatewayError('store-unavailable', 'The key store is unavailable; retry shortly.', { cause: err, headers: { 'retry-after': '1' } });
    }
  }

  /** Status checks once the secret is known to be right: only its holder learns them. */
  #accept(record: KeyRecord, digest: string, epoch: number): Identity {
    const now = this.#clock.now();
    if (record.revokedAt !== null) {
      throw this.#refuse(digest, new GatewayError('key-revoked', 'The API key has been revoked.'));
    }
    const end = effectiveEnd(record);
    if (end !== null && now >= end) {
      throw this.#refuse(digest, new GatewayError('key-expired', 'The API key has expired.'));
    }
    if (record.notBefore !== null && now < record.notBefore) {
      throw keyInvalid('The API key is not yet valid.');
    }
    // An imported key's revocation id is `legacy:` and its digest: built on the cache key's
    // string, it costs one small string instead of a second copy of the digest.
    const legacy = record.sha256 !== null && record.sha256 === digest;
    const until = end === null ? now + this.#cacheTtl : Math.min(now + this.#cacheTtl, end);
    const identity = this.#identities.build(record, end, legacy ? formatRevocationId({ kind: 'legacy', sha256: digest }) : keyRevocationId(record), until);
    this.#lastUsed.record(record.id, now);
    // An eviction while this verification ran may concern this very key: do not cache.
    if (epoch === this.#keys.epoch && !this.#closed && until > now) this.#keys.keep(digest, identity, legacy);
    return identity;
  }

  #refuse(digest: string, err: GatewayError): GatewayError {
    if (this.#negativeTtl > 0) this.#keys.entries.refuse(digest, err, this.#negativeTtl);
    return err;
  }

  #checkAttempts(keyId: string | undefined, clientIp: string): void {
    const wait = this.#attempts.wait(keyId, clientIp);
    if (wait === undefined) return;
    this.stats.rateLimited++;
    throw new GatewayError('rate-limited', 'Too many failed attempts from this address; retry later.', { headers: { 'retry-after': String(wait) } });
  }

  /** Adds `delta` to the failure counters of the key id (when known) and the client. */
  #fail(keyId: string | undefined, clientIp: string, delta: 1 | -1): void {
    this.#attempts.count(keyId, clientIp, delta);
  }

  /** Drops cached identities of one credential (`key:<id>` / `legacy:<sha256>`). */
  evict(revocationId: string): void {
    this.#keys.evict(revocationId);
  }

  /** Forgets the refusals of keys not found: keys were just imported (failed-attempt counts stay). */
  forgetRefusals(): void {
    this.#keys.entries.clearRefusals();
  }

  /** Drops every cached identity (invalidations may have been missed). */
  evictAll(): void {
    this.#keys.evictAll();
  }

  /** Drops every cached identity of a subject. */
  evictSubject(subject: string): void {
    this.#keys.evictSubject(subject);
  }

  /** Writes the pending `last used` times in one batch (also runs every `lastUsedInterval`). */
  flushLastUsed(): Promise<void> {
    return this.#lastUsed.flush();
  }

  /** Stops the flush timer and writes the pending `last used` times. Does not close the store. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#lastUsed.close();
  }
}
