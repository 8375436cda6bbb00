import { isIP } from 'node:net';
import { LruMap } from './lru-map.js';

interface Attempts {
  count: number;
  resetAt: number;
}

/** Limits of an {@link AttemptLimiter} (config `apiKeys.failedAttempts`). */
export interface AttemptLimits {
  /** Failures within `window` before a client is refused (and a key id counts as under attack). */
  readonly max: number;
  readonly window: number;
}

/**
 * The address failures are counted under: an IPv4 address itself, an IPv6 address by its
 * /64 (one host commonly holds a whole /64, and would otherwise get a fresh try from each
 * of its addresses).
 */
export function clientBucket(ip: string): string {
  const addr = ip.split('%', 1)[0]!.toLowerCase();
  if (isIP(addr) !== 6) return ip;
  // An embedded IPv4 tail is two groups; it lies in the lower 64 bits anyway.
  const groups = (s: string): string[] => (s === '' ? [] : s.split(':').flatMap((g) => (g.includes('.') ? ['0', '0'] : [g])));
  const gap = addr.indexOf('::');
  let all: string[];
  if (gap === -1) all = groups(addr);
  else {
    const head = groups(addr.slice(0, gap));
    const tail = groups(addr.slice(gap + 2));
    all = [...head, ...Array<string>(8 - head.length - tail.length).fill('0'), ...tail];
  }
  return `${all.slice(0, 4).map((g) => parseInt(g, 16).toString(16)).join(':')}::/64`;
}

/**
 * Failed-attempt limiting for secrets checked against a public key id (API keys, refresh
 * tokens; SPEC §6). Counted per client (see {@link clientBucket}) and per key id:
 * - a client with `max` failures within the window is refused (429) whatever it sends;
 * - a key id with `max` failures is under attack: then only clients with no failure of
 *   their own are let through to a verification.
 * Key ids are public and forgeries cheap, so failures by others never refuse a holder who
 * has not failed; each attacking address costs at most one verification once the key id is
 * under attack, and the verification queue bounds the rest.
 */
export class AttemptLimiter {
  readonly #max: number;
  readonly #window: number;
  readonly #now: () => number;
  readonly #counts: LruMap<Attempts>;

  constructor(limits: AttemptLimits, now: () => number, capacity = 100_000) {
    this.#max = limits.max;
    this.#window = limits.window;
    this.#now = now;
    this.#counts = new LruMap<Attempts>(capacity, 0, now);
  }

  /**
   * Whether this client may try `keyId` now: undefined when it may, else the seconds until
   * it may (the caller refuses 429 `rate-limited` with that `Retry-After`).
   */
  wait(keyId: string | undefined, client: string): number | undefined {
    const now = this.#now();
    const mine = this.#live(`ip:${clientBucket(client)}`, now);
    let until: number | undefined;
    if (mine !== undefined && mine.count >= this.#max) until = mine.resetAt;
    else if (keyId !== undefined && mine !== undefined && mine.count > 0) {
      const key = this.#live(`k:${keyId}`, now);
      if (key !== undefined && key.count >= this.#max) until = Math.min(key.resetAt, mine.resetAt);
    }
    if (until === undefined) return undefined;
    return Math.max(1, Math.ceil((until - now) / 1000));
  }

  /**
   * Counts a failure for the key id (when known) and the client; `-1` takes back one
   * counted before a verification that then succeeded or could not run. Counting before
   * the verification keeps a concurrent burst from overshooting the limit.
   */
  count(keyId: string | undefined, client: string, delta: 1 | -1): void {
    const now = this.#now();
    if (keyId !== undefined) this.#bump(`k:${keyId}`, now, delta);
    this.#bump(`ip:${clientBucket(client)}`, now, delta);
  }

  /** True while `keyId` has `max` failures (counted ones in flight included) within the window. */
  underAttack(keyId: string): boolean {
    return (this.#live(`k:${keyId}`, this.#now())?.count ?? 0) >= this.#max;
  }

  #live(name: string, now: number): Attempts | undefined {
    const a = this.#counts.get(name);
    if (a === undefined) return undefined;
    if (now >= a.resetAt) {
      this.#counts.delete(name);
      return undefined;
    }
    return a;
  }

  #bump(name: string, now: number, delta: 1 | -1): void {
    let a = this.#live(name, now);
    if (a === undefined) {
      if (delta < 0) return;
      a = { count: 0, resetAt: now + this.#window };
      this.#counts.set(name, a);
    }
    a.count = Math.max(0, a.count + delta);
  }
}
