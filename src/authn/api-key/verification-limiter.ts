import { GatewayError } from '../../http/problem.js';

/**
 * A bounded argon2 runner: at most `max` verifications at once, at most `queueMax`
 * waiting. Beyond that the request is refused at once with 503 `store-unavailable`
 * (`Retry-After: 1`): a full queue means the gateway cannot verify keys fast enough,
 * which is a capacity problem of this instance, not something the client did — so it is
 * not a 429. Failed-attempt limiting (429) applies before anything is queued.
 *
 * The queue is fair between key ids: waiters queue per key id, and a freed slot goes to
 * the key id whose turn it is, round robin. One key id holds at most a sixteenth of the
 * queue (at least one place). Forgeries for one key id, from however many addresses, so
 * take at most their share of argon2 and of the queue, and a holder of another key is
 * verified after at most one run per other waiting key id. (A holder's own requests are
 * one verification whatever their number: identical keys share it.)
 */
export class VerificationLimiter {
  readonly #max: number;
  readonly #queueMax: number;
  readonly #perKeyMax: number;
  #active = 0;
  #queued = 0;
  /** Waiters by key id in arrival order; the map's order is the key ids' turn. */
  readonly #waiting = new Map<string, Array<() => void>>();

  constructor(max: number, queueMax: number) {
    this.#max = max;
    this.#queueMax = queueMax;
    this.#perKeyMax = Math.max(1, Math.ceil(queueMax / 16));
  }

  get active(): number {
    return this.#active;
  }

  get queued(): number {
    return this.#queued;
  }

  /** Resolves when a slot is held for a verification of `keyId`; throws when its queue is full. */
  acquire(keyId: string): Promise<void> | undefined {
    if (this.#active < this.#max) {
      this.#active++;
      return undefined;
    }
    const mine = this.#waiting.get(keyId);
    if (this.#queued >= this.#queueMax || (mine !== undefined && mine.length >= this.#perKeyMax)) {
      throw new GatewayError('store-unavailable', 'Key verification is overloaded; retry shortly.', { headers: { 'retry-after': '1' } });
    }
    this.#queued++;
    return new Promise<void>((resolve) => {
      if (mine === undefined) this.#waiting.set(keyId, [resolve]);
      else mine.push(resolve);
    });
  }

  /**
   * Runs `fn` holding a slot for `keyId`; rejects at once (503) when its queue is full.
   * Counts into `stats`: runs started, and refusals.
   */
  async run<T>(keyId: string, fn: () => Promise<T>, stats: { verifications: number; overloaded: number }): Promise<T> {
    let wait: Promise<void> | undefined;
    try {
      wait = this.acquire(keyId);
    } catch (err) {
      stats.overloaded++;
      throw err;
    }
    if (wait !== undefined) await wait;
    try {
      stats.verifications++;
      return await fn();
    } finally {
      this.release();
    }
  }

  /** Hands the slot to the first waiter of the key id whose turn it is (which then goes last), or frees it. */
  release(): void {
    const turn = this.#waiting.entries().next();
    if (turn.done === true) {
      this.#active--;
      return;
    }
    const [keyId, waiters] = turn.value;
    const next = waiters.shift()!;
    this.#waiting.delete(keyId);
    if (waiters.length > 0) this.#waiting.set(keyId, waiters);
    this.#queued--;
    next();
  }
}
