import { ExpiringLru, LruMap } from '../util/lru-map.js';
import type { Identity } from './types.js';

/** Bounds and wiring of a {@link VerifiedCache}. */
export interface VerifiedCacheOptions<P> {
  /** Verified identities kept at most. */
  readonly max: number;
  /** Refusals kept at most. */
  readonly refusalMax: number;
  /** The clock entries expire by (ms). */
  readonly now: () => number;
  /** When a cached identity stops being served (ms, by `now`): identities carry their expiry. */
  readonly until: (entry: P) => number;
  /** Hears of every identity that leaves the cache (for an authenticator's own indexes). */
  readonly onRemove?: ((key: string, entry: P) => void) | undefined;
}

/**
 * What an authenticator remembers about credentials it has checked, keyed by a digest of
 * the credential: verified identities (positive), refusals a retry cannot cure (negative),
 * and the verifications running now (in-flight), so concurrent requests presenting one
 * credential share one verification. `P` is what a hit returns (an Identity, or one with
 * its exact end), `R` what a refusal replays. Entries expire by the injected clock; both maps
 * allocate per entry, so a large bound costs nothing until it is used; an identity is held
 * as it is, carrying its own expiry (`until`), with no wrapper object.
 */
export class VerifiedCache<P, R> {
  readonly #identities: ExpiringLru<P>;
  readonly #refusals: LruMap<R>;
  readonly #inflight = new Map<string, Promise<Identity>>();

  constructor(options: VerifiedCacheOptions<P>) {
    this.#identities = new ExpiringLru<P>(options.max, options.until, options.now, options.onRemove);
    this.#refusals = new LruMap<R>(options.refusalMax, 0, options.now);
  }

  /** The cached identity, made the most recently used; undefined when absent or expired. */
  get(key: string): P | undefined {
    return this.#identities.get(key);
  }

  /** The cached identity without touching its recency; an expired one only with `allowStale`. */
  peek(key: string, allowStale = false): P | undefined {
    return this.#identities.peek(key, allowStale);
  }

  /** Keeps an identity until its own expiry (`until`). */
  set(key: string, entry: P): void {
    this.#identities.set(key, entry);
  }

  delete(key: string): void {
    this.#identities.delete(key);
  }

  /** Keys of the identities that match, stale ones too: the rare scan (revocation by subject or by claim). */
  keysWhere(match: (entry: P) => boolean): string[] {
    return this.#identities.keysWhere(match);
  }

  /** The remembered refusal of this credential, if still held. */
  refusal(key: string): R | undefined {
    return this.#refusals.get(key);
  }

  /** Remembers a refusal for `ttl` ms (> 0). */
  refuse(key: string, refusal: R, ttl: number): void {
    this.#refusals.set(key, refusal, ttl);
  }

  deleteRefusal(key: string): void {
    this.#refusals.delete(key);
  }

  clearRefusals(): void {
    this.#refusals.clear();
  }

  /** The verification of this credential running now, if any. */
  running(key: string): Promise<Identity> | undefined {
    return this.#inflight.get(key);
  }

  /** Registers a verification as running until it settles; returns the promise to share. */
  track(key: string, verification: Promise<Identity>): Promise<Identity> {
    const shared = verification.finally(() => this.#inflight.delete(key));
    this.#inflight.set(key, shared);
    return shared;
  }

  /** Drops every identity and refusal (verifications running keep running). */
  clear(): void {
    this.#identities.clear();
    this.#refusals.clear();
  }

  /** Drops every identity. */
  clearIdentities(): void {
    this.#identities.clear();
  }
}
