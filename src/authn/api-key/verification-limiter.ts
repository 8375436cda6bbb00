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
 * Waiters queue per key id, and a freed slot goes to the key id whose turn it is, round
 * robin: a holder waits for at most one run per other waiting key id, however many
 * forgeries for one key id are queued. When the queue is full, a newcomer whose key id is
 * not under attack (`attacked`: failures past the limit, see AttemptLimiter) takes the
 * place of a waiter, chosen at random, of the attacked key id with the most waiters; any
 * other newcomer is refused. A flood for one key id so cannot keep holders of other keys
 * out of the queue. Forgeries spread over many key ids that none reaches the failure limit
 * still fill it: that is this instance's capacity (`verificationQueue`,
 * `maxConcurrentVerifications`).
 */
export class VerificationLimiter {
  readonly #max: number;
  readonly #queueMax: number;
  readonly #attacked: (keyId: string) => boolean;
  #active = 0;
  #queued = 0;
  /** Waiters by key id in arrival order; the map's order is the key ids' turn. */
  readonly #waiting = new Map<string, Waiter[]>();
  /** How to tell whether a waiting key id is under attack, when not `#attacked` (refresh tokens). */
  readonly #judges = new Map<string, (keyId: string) => boolean>();

  constructor(max: number, queueMax: number, attacked: (keyId: string) => boolean = () => false) {
    this.#max = max;
    this.#queueMax = queueMax;
    this.#attacked = attacked;
  }

  get active(): number {
    return this.#active;
  }

  get queued(): number {
    return this.#queued;
  }

  /** Resolves when a slot is held for a verification of `keyId`; throws when it cannot queue. */
  acquire(keyId: string, attacked: (keyId: string) => boolean = this.#attacked): Promise<void> | undefined {
    if (this.#active < this.#max) {
      this.#active++;
      return undefined;
    }
    if (this.#queued >= this.#queueMax && !this.#makeRoom(keyId, attacked)) throw overloaded();
    if (attacked !== this.#attacked) this.#judges.set(keyId, attacked);
    this.#queued++;
    return new Promise<void>((resolve, reject) => {
      const w = { resolve, reject };
      const mine = this.#waiting.get(keyId);
      if (mine === undefined) this.#waiting.set(keyId, [w]);
      else mine.push(w);
    });
  }

  /** A full queue: a newcomer not under attack evicts a random waiter of the largest attacked key id. */
  #makeRoom(keyId: string, attacked: (keyId: string) => boolean): boolean {
    if (attacked(keyId)) return false;
    let victim: [string, Waiter[]] | undefined;
    for (const entry of this.#waiting) {
      if ((victim === undefined || entry[1].length > victim[1].length) && (this.#judges.get(entry[0]) ?? this.#attacked)(entry[0])) victim = entry;
    }
    if (victim === undefined) return false;
    const [id, waiters] = victim;
    const evicted = waiters.splice(Math.floor(Math.random() * waiters.length), 1)[0]!;
    if (waiters.length === 0) this.#forget(id);
    this.#queued--;
    evicted.reject(overloaded());
    return true;
  }

  #forget(keyId: string): void {
    this.#waiting.delete(keyId);
    this.#judges.delete(keyId);
  }

  /**
   * Runs `fn` holding a slot for `keyId`; rejects (503) when it cannot queue or loses its
   * place. Counts into `stats`: runs started, and refusals.
   */
  async run<T>(keyId: string, fn: () => Promise<T>, stats: { verifications: number; overloaded: number }, attacked?: (keyId: string) => boolean): Promise<T> {
    try {
      const wait = this.acquire(keyId, attacked);
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
    else this.#judges.delete(keyId);
    this.#queued--;
    next.resolve();
  }
}
