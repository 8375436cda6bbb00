import { GatewayError } from '../../http/problem.js';

/**
 * A bounded argon2 runner: at most `max` verifications at once, at most `queueMax`
 * waiting. Beyond that the request is refused at once with 503 `store-unavailable`
 * (`Retry-After: 1`): a full queue means the gateway cannot verify keys fast enough,
 * which is a capacity problem of this instance, not something the client did — so it is
 * not a 429. Failed-attempt limiting (429) applies before anything is queued.
 */
export class VerificationLimiter {
  readonly #max: number;
  readonly #queueMax: number;
  #active = 0;
  readonly #queue: Array<() => void> = [];

  constructor(max: number, queueMax: number) {
    this.#max = max;
    this.#queueMax = queueMax;
  }

  get active(): number {
    return this.#active;
  }

  get queued(): number {
    return this.#queue.length;
  }

  /** Resolves when a slot is held; throws when the queue is full. */
  acquire(): Promise<void> | undefined {
    if (this.#active < this.#max) {
      this.#active++;
      return undefined;
    }
    if (this.#queue.length >= this.#queueMax) {
      throw new GatewayError('store-unavailable', 'Key verification is overloaded; retry shortly.', { headers: { 'retry-after': '1' } });
    }
    return new Promise<void>((resolve) => this.#queue.push(resolve));
  }

  release(): void {
    const next = this.#queue.shift();
    if (next !== undefined) next();
    else this.#active--;
  }
}
