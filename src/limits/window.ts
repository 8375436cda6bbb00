/**
 * The sliding-window arithmetic behind every rate limit, pure so that the in-process
 * limiter, the Redis script (which mirrors it line for line) and the property tests all
 * speak of one rule.
 *
 * A window of `windowMs` is cut into `SLOTS` slots of `windowMs / SLOTS`. A request is
 * admitted when the requests already admitted in every slot that overlaps the last
 * `windowMs` — the oldest, partly outside, counted whole — are fewer than `limit`. Counting
 * the oldest slot whole makes the rule conservative: in ANY interval of length `windowMs`,
 * wherever it starts, at most `limit` requests are admitted (there is no window boundary
 * to burst across, as with fixed windows), at the price of admitting up to one slot's share
 * late. Memory is `SLOTS + 1` counters per bucket, whatever the limit.
 */

/** Slots per window: the rule refuses at most a tenth of a window's worth early. */
export const SLOTS = 10;

/** Counters of one bucket: slot index (time / slot length) → admitted requests in it. */
export type Slots = Map<number, number>;

export interface WindowVerdict {
  readonly admitted: boolean;
  /** Requests still admitted in the current window after this one. */
  readonly remaining: number;
  /** Milliseconds until a request would be admitted again (0 while remaining > 0 or admitted). */
  readonly retryAfterMs: number;
}

/** The slot length of a window, in ms (at least 1). */
export function slotMs(windowMs: number): number {
  return Math.max(1, Math.floor(windowMs / SLOTS));
}

/**
 * Looks at one bucket at `now` without counting: forgets slots that no longer overlap the
 * window (in place) and says whether one more request fits. A request limited by several
 * buckets is admitted only when each fits, and then counted in each ({@link count}).
 */
export function peek(slots: Slots, now: number, limit: number, windowMs: number): WindowVerdict {
  const size = slotMs(windowMs);
  const oldest = Math.floor((now - windowMs) / size);
  let used = 0;
  for (const [slot, n] of slots) {
    if (slot < oldest) slots.delete(slot);
    else used += n;
  }
  if (used < limit) return { admitted: true, remaining: limit - used - 1, retryAfterMs: 0 };
  return { admitted: false, remaining: 0, retryAfterMs: retryAfter(slots, now, limit, windowMs, size) };
}

/** Counts one admitted request at `now`. */
export function count(slots: Slots, now: number, windowMs: number): void {
  const current = Math.floor(now / slotMs(windowMs));
  slots.set(current, (slots.get(current) ?? 0) + 1);
}

/**
 * How long until enough old slots leave the window for one more request: slot `s` stops
 * counting once `floor((t - window) / size) > s`, i.e. at `t = (s + 1) * size + window`.
 */
function retryAfter(slots: Slots, now: number, limit: number, windowMs: number, size: number): number {
  const ordered = [...slots.entries()].sort((a, b) => a[0] - b[0]);
  let used = 0;
  for (const [, n] of ordered) used += n;
  for (const [slot, n] of ordered) {
    used -= n;
    if (used < limit) return Math.max(1, (slot + 1) * size + windowMs - now);
  }
  return 1;
}
