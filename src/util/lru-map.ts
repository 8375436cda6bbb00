interface LruEntry<V> {
  readonly value: V;
  /** Expiry time (ms, the injected clock); 0: none. */
  readonly until: number;
}

/**
 * A bounded LRU map with optional per-entry expiry that allocates per entry only. lru-cache
 * preallocates its slot arrays for `max` entries up front (about 44 bytes a slot: 4.4 MB
 * for 100 000), which side tables — failures, refusals, proven hashes, all nearly empty in
 * normal operation — should not pay. Expiry as lru-cache's: stale once more than `ttl` ms
 * have passed.
 */
export class LruMap<V> {
  readonly #max: number;
  /** Lifetime of an entry in ms; 0: entries do not expire. */
  readonly #ttl: number;
  readonly #now: () => number;
  readonly #map = new Map<string, LruEntry<V>>();

  constructor(max: number, ttl: number, now: () => number) {
    this.#max = max;
    this.#ttl = ttl;
    this.#now = now;
  }

  /** The value, made the most recently used; undefined when absent or expired. */
  get(key: string): V | undefined {
    const e = this.#map.get(key);
    if (e === undefined) return undefined;
    if (e.until !== 0 && this.#now() > e.until) {
      this.#map.delete(key);
      return undefined;
    }
    // Map iteration order is insertion order: re-inserting makes it the newest.
    this.#map.delete(key);
    this.#map.set(key, e);
    return e.value;
  }

  /** Whether a live value is there; does not change its recency. */
  has(key: string): boolean {
    const e = this.#map.get(key);
    return e !== undefined && (e.until === 0 || this.#now() <= e.until);
  }

  set(key: string, value: V): void {
    this.#map.delete(key);
    this.#map.set(key, { value, until: this.#ttl > 0 ? this.#now() + this.#ttl : 0 });
    if (this.#map.size > this.#max) {
      const oldest = this.#map.keys().next();
      if (oldest.done !== true) this.#map.delete(oldest.value);
    }
  }

  delete(key: string): void {
    this.#map.delete(key);
  }

  clear(): void {
    this.#map.clear();
  }
}
