interface LruEntry<V> {
  readonly value: V;
  /** Expiry time (ms, the injected clock); 0: none. */
  readonly until: number;
}

/**
 * A bounded LRU map with optional per-entry expiry that allocates per entry only. lru-cache
 * preallocates its slot arrays for `max` entries up front (about 44 bytes a slot: 4.4 MB
 * for 100 000), which caches sized for a peak — verified identities, failures, refusals,
 * proven hashes, most nearly empty in normal operation — should not pay. Expiry as
 * lru-cache's: stale once more than `ttl` ms have passed.
 */
export class LruMap<V> {
  readonly #max: number;
  /** Default lifetime of an entry in ms; 0: entries do not expire. */
  readonly #ttl: number;
  readonly #now: () => number;
  readonly #map = new Map<string, LruEntry<V>>();
  readonly #onRemove: ((key: string, value: V) => void) | undefined;

  /** `onRemove` hears of every entry that leaves: deleted, replaced, expired, evicted or cleared. */
  constructor(max: number, ttl: number, now: () => number, onRemove?: (key: string, value: V) => void) {
    this.#max = max;
    this.#ttl = ttl;
    this.#now = now;
    this.#onRemove = onRemove;
  }

  get size(): number {
    return this.#map.size;
  }

  /** The value, made the most recently used; undefined when absent or expired. */
  get(key: string): V | undefined {
    const e = this.#map.get(key);
    if (e === undefined) return undefined;
    if (e.until !== 0 && this.#now() > e.until) {
      this.delete(key);
      return undefined;
    }
    // Map iteration order is insertion order: re-inserting makes it the newest.
    this.#map.delete(key);
    this.#map.set(key, e);
    return e.value;
  }

  /** The value without changing its recency; an expired one only with `allowStale`. */
  peek(key: string, allowStale = false): V | undefined {
    const e = this.#map.get(key);
    if (e === undefined || (!allowStale && e.until !== 0 && this.#now() > e.until)) return undefined;
    return e.value;
  }

  /** Whether a live value is there; does not change its recency. */
  has(key: string): boolean {
    return this.peek(key) !== undefined;
  }

  /** Stores a value for `ttl` ms (default: the map's). */
  set(key: string, value: V, ttl = this.#ttl): void {
    const old = this.#map.get(key);
    if (old !== undefined) {
      this.#map.delete(key);
      if (old.value !== value) this.#onRemove?.(key, old.value);
    }
    this.#map.set(key, { value, until: ttl > 0 ? this.#now() + ttl : 0 });
    if (this.#map.size > this.#max) {
      const oldest = this.#map.keys().next();
      if (oldest.done !== true) this.delete(oldest.value);
    }
  }

  delete(key: string): void {
    const e = this.#map.get(key);
    if (e === undefined) return;
    this.#map.delete(key);
    this.#onRemove?.(key, e.value);
  }

  /** Live entries, least recently used first. */
  *entries(): IterableIterator<[string, V]> {
    const now = this.#now();
    for (const [key, e] of this.#map) if (e.until === 0 || now <= e.until) yield [key, e.value];
  }

  clear(): void {
    if (this.#onRemove === undefined) {
      this.#map.clear();
      return;
    }
    const all = [...this.#map];
    this.#map.clear();
    for (const [key, e] of all) this.#onRemove(key, e.value);
  }
}
