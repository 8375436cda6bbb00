import { GatewayError } from '../../http/problem.js';

const overloaded = (): GatewayError =>
  new GatewayError('store-unavailable', 'Key verification is overloaded; retry shortly.', { headers: { 'retry-after': '1' } });

interface Waiter {
  readonly resolve: () => void;
  readonly reject: (err: GatewayError) => void;
}

/**
 * A bounded argon2 runner: at most `max` verifications at once, at most `queueMax`
 * waiting. Beyond that a request is refused at once with 503 `store-unavailable`
 * (`Retry-After: 1`): a full queue means the gateway cannot verify keys fast enough,
 * which is a capacity problem of this instance, not something the client did — so it is
 * not a 429. Failed-attempt limiting (429) applies before anything is queued.
 *
 * The queue is fair between key ids. Waiters queue per key id, and a freed slot goes to
 * the key id whose turn it is, round robin. When the queue is full, a newcomer of another
 * key id takes the place of the newest waiter of the key id with the most waiters, which
 * is refused instead; a newcomer of that key id is refused itself. So forgeries for one key
 * id, from however many addresses, cannot keep a holder of another key out of the queue,
 * and that holder is verified after at most one run per other waiting key id. A key id's
 * own holder gets a place as long as the queue is not full. (A holder's own requests are
 * one verification whatever their number: identical keys share it.)
 */
export class VerificationLimiter {
  readonly #max: number;
  readonly #queueMax: number;
  #active = 0;
  #queued = 0;
  /** Waiters by key id in arrival order; the map's order is the key ids' turn. */
  readonly #waiting = new Map<string, Waiter[]>();

  constructor(max: number, queueMax: number) {
    this.#max = max;
    this.#queueMax = queueMax;
  }

  get active(): number {
    return this.#active;
  }

  get queued(): number {
    return this.#queued;
  }

  /** Resolves when a slot is held for a verification of `keyId`; throws when it cannot queue. */
  acquire(keyId: string): Promise<void> | undefined {
    if (this.#active < this.#max) {
      this.#active++;
      return undefined;
    }
    const mine = this.#waiting.get(keyId);
    if (this.#queued >= this.#queueMax && !this.#makeRoom(mine?.length ?? 0)) throw overloaded();
    this.#queued++;
    return new Promise<void>((resolve, reject) => {
      const w = { resolve, reject };
      if (mine === undefined) this.#waiting.set(keyId, [w]);
      else mine.push(w);
    });
  }

  /**
   * A full queue: refuses the newest waiter of the key id with the most waiters when it has
   * more than `mine + 1` (the newcomer's key id would not then be the largest). False when
   * no place can be taken.
   */
  #makeRoom(mine: number): boolean {
    let fattest: Waiter[] | undefined;
    for (const waiters of this.#waiting.values()) if (fattest === undefined || waiters.length > fattest.length) fattest = waiters;
    if (fattest === undefined || fattest.length <= mine + 1) return false;
    fattest.pop()!.reject(overloaded());
    this.#queued--;
    return true;
  }

  /**
   * Runs `fn` holding a slot for `keyId`; rejects (503) when it cannot queue or loses its
   * place. Counts into `stats`: runs started, and refusals.
   */
  async run<T>(keyId: string, fn: () => Promise<T>, stats: { verifications: number; overloaded: number }): Promise<T> {
    try {
      const wait = this.acquire(keyId);
      if (wait !== undefined) await wait;
    } catch (err) {
      stats.overloaded++;
      throw err;
    }
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
    next.resolve();
  }
}
