interface LruEntry<V> {
  readonly value: V;
  /** Expiry time (ms, the injected clock); Infinity: none. */
  readonly until: number;
}

/**
 * A bounded LRU map with per-entry expiry that allocates per entry only. lru-cache
 * preallocates its slot arrays for `max` entries up front (about 44 bytes a slot: 4.4 MB
 * for 100 000), which caches sized for a peak — verified identities, failures, refusals,
 * proven hashes, most nearly empty in normal operation — should not pay. Expiry as
 * lru-cache's: stale once more than `ttl` ms have passed. `S` is what the map holds for a
 * value `V`: the value with its expiry ({@link LruMap}), or the value itself when it
 * carries its own ({@link ExpiringLru}). An expiry that is not a number at or after the
 * clock's time (NaN, undefined) counts as past: a value without a valid one is never served.
 */
abstract class LruBase<S, V> {
  readonly #max: number;
  readonly #now: () => number;
  readonly #map = new Map<string, S>();
  readonly #onRemove: ((key: string, value: V) => void) | undefined;

  /** `onRemove` hears of every entry that leaves: deleted, replaced, expired, evicted or cleared. */
  constructor(max: number, now: () => number, onRemove?: (key: string, value: V) => void) {
    this.#max = max;
    this.#now = now;
    this.#onRemove = onRemove;
  }

  /** Expiry time of a held entry (ms); Infinity: none. */
  protected abstract until(held: S): number;
  protected abstract value(held: S): V;

  get size(): number {
    return this.#map.size;
  }

  /** The value, made the most recently used; undefined when absent or expired. */
  get(key: string): V | undefined {
    const held = this.#map.get(key);
    if (held === undefined) return undefined;
    if (!(this.#now() <= this.until(held))) {
      this.delete(key);
      return undefined;
    }
    // Map iteration order is insertion order: re-inserting makes it the newest.
    this.#map.delete(key);
    this.#map.set(key, held);
    return this.value(held);
  }

  /** The value without changing its recency; an expired one only with `allowStale`. */
  peek(key: string, allowStale = false): V | undefined {
    const held = this.#map.get(key);
    if (held === undefined) return undefined;
    return allowStale || this.#now() <= this.until(held) ? this.value(held) : undefined;
  }

  /** Whether a live value is there; does not change its recency. */
  has(key: string): boolean {
    return this.peek(key) !== undefined;
  }

  protected hold(key: string, held: S): void {
    const old = this.#map.get(key);
    if (old !== undefined) {
      this.#map.delete(key);
      const value = this.value(old);
      if (value !== this.value(held)) this.#onRemove?.(key, value);
    }
    this.#map.set(key, held);
    if (this.#map.size > this.#max) {
      const oldest = this.#map.keys().next();
      if (oldest.done !== true) this.delete(oldest.value);
    }
  }

  protected clock(): number {
    return this.#now();
  }

  delete(key: string): void {
    const held = this.#map.get(key);
    if (held === undefined) return;
    this.#map.delete(key);
    this.#onRemove?.(key, this.value(held));
  }

  /**
   * Keys of the entries whose value matches, least recently used first, stale ones too (an
   * eviction must not leave behind an entry a clock stepped back would serve again): the
   * rare scan, without an allocation per entry.
   */
  keysWhere(match: (value: V) => boolean): string[] {
    const keys: string[] = [];
    this.#map.forEach((held, key) => {
      if (match(this.value(held))) keys.push(key);
    });
    return keys;
  }

  clear(): void {
    if (this.#onRemove === undefined) {
      this.#map.clear();
      return;
    }
    const all = [...this.#map];
    this.#map.clear();
    for (const [key, held] of all) this.#onRemove(key, this.value(held));
  }
}

/** An LRU map whose entries expire `ttl` ms after they are stored (0: never). */
export class LruMap<V> extends LruBase<LruEntry<V>, V> {
  /** Default lifetime of an entry in ms; 0: entries do not expire. */
  readonly #ttl: number;

  constructor(max: number, ttl: number, now: () => number, onRemove?: (key: string, value: V) => void) {
    super(max, now, onRemove);
    this.#ttl = ttl;
  }

  protected until(held: LruEntry<V>): number {
    return held.until;
  }

  protected value(held: LruEntry<V>): V {
    return held.value;
  }

  /** Stores a value for `ttl` ms (default: the map's). */
  set(key: string, value: V, ttl = this.#ttl): void {
    this.hold(key, { value, until: ttl > 0 ? this.clock() + ttl : Number.POSITIVE_INFINITY });
  }
}

/**
 * An LRU map of values that carry their own expiry (`untilOf`, ms; Infinity: none): one
 * object less per entry than {@link LruMap} — 40 bytes and a boxed number a cached identity.
 */
export class ExpiringLru<V> extends LruBase<V, V> {
  readonly #untilOf: (value: V) => number;

  constructor(max: number, untilOf: (value: V) => number, now: () => number, onRemove?: (key: string, value: V) => void) {
    super(max, now, onRemove);
    this.#untilOf = untilOf;
  }

  protected until(held: V): number {
    return this.#untilOf(held);
  }

  protected value(held: V): V {
    return held;
  }

  /** Stores a value until its own expiry. */
  set(key: string, value: V): void {
    this.hold(key, value);
  }
}
