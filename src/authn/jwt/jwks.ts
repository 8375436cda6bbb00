import type { Dispatcher } from 'undici';
import { createLocalJWKSet, errors, type FlattenedJWSInput, type JWSHeaderParameters } from 'jose';
import type { Clock } from '../../clock.js';

type KeyResolver = ReturnType<typeof createLocalJWKSet>;
type VerifyKey = Awaited<ReturnType<KeyResolver>>;

/** Settings of one JWKS cache; durations in milliseconds. */
export interface JwksCacheOptions {
  /** The JWKS document; `http:` is allowed (`check` warns unless it is loopback). */
  readonly uri: string;
  /** Whole-request time limit of one fetch (`jwt.jwksTimeout`). */
  readonly timeout: number;
  /** Age after which the set is refreshed in the background (`jwt.jwksCacheMaxAge`). */
  readonly cacheMaxAge: number;
  /** Minimum time between fetches triggered by unknown keys or failed refreshes (`jwt.jwksCooldown`). */
  readonly cooldown: number;
  readonly clock: Clock;
  /** undici dispatcher for the fetches (custom CA, proxy); the global one by default. */
  readonly dispatcher?: Dispatcher | undefined;
  /** Largest JWKS document accepted, in bytes. Default 1 MiB. */
  readonly maxBytes?: number | undefined;
  /** Called with every failed fetch (the set keeps being served meanwhile). */
  readonly onError?: ((err: unknown) => void) | undefined;
}

/** Counters for metrics and tests. */
export interface JwksStats {
  /** Fetches started. */
  fetches: number;
  /** Fetches that failed (network, status, body or key set). */
  failures: number;
  /** Clock time (ms) of the last successful load; undefined until the first. */
  loadedAt: number | undefined;
  /** Message of the last failure, for `/readyz` details and logs. */
  lastError: string | undefined;
}

/** A JWKS fetch that did not produce a usable key set. */
export class JwksFetchError extends Error {
  override readonly name = 'JwksFetchError';
}

const RETRY_FLOOR = 1_000;

/**
 * One issuer's JSON Web Key Set: fetched with undici at `start()`, refreshed in the
 * background once older than `cacheMaxAge`, served stale while a refresh fails, and
 * refetched on an unknown `kid` at most once per `cooldown`. Concurrent fetches
 * coalesce into one. Key selection inside the set (kid, alg, kty, use, key_ops) is
 * jose's `createLocalJWKSet`; this class only decides when to fetch.
 */
export class JwksCache {
  readonly uri: string;
  readonly stats: JwksStats = { fetches: 0, failures: 0, loadedAt: undefined, lastError: undefined };
  readonly #opts: JwksCacheOptions;
  readonly #maxBytes: number;
  #keys: KeyResolver | undefined;
  /** Clock time when the most recent fetch started; every fetch counts for the cooldown. */
  #lastAttemptAt = Number.NEGATIVE_INFINITY;
  #pending: Promise<boolean> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #failuresInRow = 0;
  #closed = false;

  constructor(options: JwksCacheOptions) {
    const url = new URL(options.uri);
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new TypeError(`JWKS URI must be http(s): ${options.uri}`);
    this.uri = url.href;
    this.#opts = options;
    this.#maxBytes = options.maxBytes ?? 1_048_576;
  }

  /** Fetches the set once; resolves (never rejects) when that attempt settles. Check `ready()`. */
  async start(): Promise<void> {
    await this.refresh();
  }

  /** True once a key set has been loaded (it may be stale). */
  ready(): boolean {
    return this.#keys !== undefined;
  }

  /**
   * Fetches the set now unless a fetch is already running, in which case this joins it.
   * Resolves to whether the fetch (this one or the joined one) loaded a set.
   */
  refresh(): Promise<boolean> {
    if (this.#pending) return this.#pending;
    if (this.#closed) return Promise.resolve(false);
    this.#lastAttemptAt = this.#opts.clock.now();
    this.stats.fetches++;
    const pending = this.#load().finally(() => {
      if (this.#pending === pending) this.#pending = undefined;
    });
    this.#pending = pending;
    return pending;
  }

  /**
   * jose key resolver (`jwtVerify(token, cache.getKey)`): the key of the set that
   * matches the header. An unknown `kid` waits for a refetch when the cooldown allows
   * one (or one is already running) and otherwise fails as jose's `ERR_JWKS_NO_MATCHING_KEY`.
   */
  readonly getKey = async (header: JWSHeaderParameters, token: FlattenedJWSInput): Promise<VerifyKey> => {
    let keys = this.#keys;
    if (keys === undefined) {
      if (this.#pending || this.#cooldownOver()) await this.refresh();
      keys = this.#keys;
      if (keys === undefined) throw new errors.JWKSInvalid(`signing keys not available from ${this.uri}: ${this.stats.lastError ?? 'not fetched'}`);
    } else if (this.#stale() && !this.#pending && this.#cooldownOver()) {
      void this.refresh();
    }
    try {
      return await keys(header, token);
    } catch (err) {
      if (!(err instanceof errors.JWKSNoMatchingKey)) throw err;
      if (!this.#pending && !this.#cooldownOver()) throw err;
      await this.refresh();
      const next = this.#keys;
      if (next === undefined || next === keys) throw err;
      return next(header, token);
    }
  };

  /** Stops background refreshes; a fetch in flight completes but is ignored. */
  close(): void {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #stale(): boolean {
    return this.#opts.clock.now() - (this.stats.loadedAt ?? Number.NEGATIVE_INFINITY) >= this.#opts.cacheMaxAge;
  }

  #cooldownOver(): boolean {
    return this.#opts.clock.now() - this.#lastAttemptAt >= this.#opts.cooldown;
  }

  async #load(): Promise<boolean> {
    try {
      const json = await this.#fetch();
      // createLocalJWKSet validates the shape (an object with a `keys` array of objects).
      const keys = createLocalJWKSet(json as Parameters<typeof createLocalJWKSet>[0]);
      if (this.#closed) return false;
      this.#keys = keys;
      this.stats.loadedAt = this.#opts.clock.now();
      this.stats.lastError = undefined;
      this.#failuresInRow = 0;
      this.#schedule(this.#opts.cacheMaxAge);
      return true;
    } catch (err) {
      this.stats.failures++;
      this.stats.lastError = err instanceof Error ? err.message : String(err);
      this.#failuresInRow++;
      try {
        this.#opts.onError?.(err);
      } catch {
        // A failing logger must not turn a background refresh into an unhandled rejection.
      }
      // Not loaded yet: retry soon with backoff so readiness recovers without traffic.
      // Loaded: keep serving the old set and retry once per cooldown.
      const backoff = Math.min(this.#opts.cooldown, RETRY_FLOOR * 2 ** Math.min(this.#failuresInRow - 1, 16));
      this.#schedule(this.#keys === undefined ? backoff : Math.max(this.#opts.cooldown, RETRY_FLOOR));
      return false;
    }
  }

  #schedule(delay: number): void {
    if (this.#closed) return;
    if (this.#timer) clearTimeout(this.#timer);
    // Timers run on real time; ages are judged on the injected clock in getKey as well,
    // so a moved test clock and a long-running process both refresh.
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.refresh();
    }, Math.max(delay, RETRY_FLOOR));
    this.#timer.unref();
  }

  async #fetch(): Promise<unknown> {
    const { timeout, dispatcher } = this.#opts;
    // undici loads with the first key set fetched: a gateway without JWKS issuers does not carry it.
    const { request } = await import('undici');
    const res = await request(this.uri, {
      method: 'GET',
      headers: { accept: 'application/jwk-set+json, application/json' },
      signal: AbortSignal.timeout(timeout),
      headersTimeout: timeout,
      bodyTimeout: timeout,
      ...(dispatcher ? { dispatcher } : {}),
    });
    if (res.statusCode !== 200) {
      await res.body.dump();
      throw new JwksFetchError(`JWKS endpoint ${this.uri} answered ${res.statusCode}`);
    }
    const declared = Number(res.headers['content-length']);
    if (declared > this.#maxBytes) {
      await res.body.dump();
      throw new JwksFetchError(`JWKS document from ${this.uri} exceeds ${this.#maxBytes} bytes`);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of res.body) {
      size += (chunk as Buffer).length;
      if (size > this.#maxBytes) {
        res.body.destroy();
        throw new JwksFetchError(`JWKS document from ${this.uri} exceeds ${this.#maxBytes} bytes`);
      }
      chunks.push(chunk as Buffer);
    }
    try {
      return JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch (cause) {
      throw new JwksFetchError(`JWKS document from ${this.uri} is not JSON`, { cause });
    }
  }
}
