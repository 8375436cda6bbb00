import type { Hit } from './policy.js';
import { verdictOf, type LimitVerdict, type RateLimiter } from './types.js';
import { count, peek, type Slots } from './window.js';
import { LruMap } from '../util/lru-map.js';

/**
 * Rate limits kept in this process (no Redis): each instance enforces them alone. The
 * buckets live in an LRU bounded by `maxBuckets`; a bucket evicted there starts afresh,
 * so the bound must exceed the number of buckets active within one window.
 */
export class LocalRateLimiter implements RateLimiter {
  readonly #buckets: LruMap<Slots>;

  private readonly now: () => number;
  constructor(now: () => number = Date.now, maxBuckets = 100_000) {
    this.now = now;
    this.#buckets = new LruMap<Slots>(maxBuckets, 0, now);
  }

  check(hits: readonly Hit[]): LimitVerdict {
    const t = this.now();
    const slots: Slots[] = [];
    const remaining: number[] = [];
    const retry: number[] = [];
    let admitted = true;
    for (const h of hits) {
      // The window is part of the bucket: slots are counted in a window's slot length, and a
      // policy (or a key's own limit) given another window starts afresh rather than reading
      // slot numbers of another length.
      const key = `${h.policy.name}\u0000${h.policy.windowMs}\u0000${h.bucket}`;
      let s = this.#buckets.get(key);
      if (s === undefined) this.#buckets.set(key, (s = new Map()));
      const v = peek(s, t, h.policy.limit, h.policy.windowMs);
      slots.push(s);
      remaining.push(v.remaining);
      retry.push(v.retryAfterMs);
      if (!v.admitted) admitted = false;
    }
    if (admitted) for (let i = 0; i < hits.length; i++) count(slots[i]!, t, hits[i]!.policy.windowMs);
    return verdictOf(hits, admitted, remaining, retry);
  }

  connected(): boolean {
    return true;
  }

  async close(): Promise<void> {
    this.#buckets.clear();
  }
}
