import type { KeyRepository } from '../store/types.js';
import type { RateLimiter } from './types.js';

interface Waiter {
  resolve(ok: boolean): void;
  reject(err: unknown): void;
}

/**
 * Usage credits of keys (`keys create --uses N`): each admitted request of a key whose
 * lineage has credits spends one in the key store, durable and exact across a fleet. The
 * requests of one event-loop turn go to the store together, one transaction for the batch.
 */
export class UsageCredits {
  readonly #store: Pick<KeyRepository, 'spendUses'>;
  #pending = new Map<string, Waiter[]>();
  #scheduled = false;

  constructor(store: Pick<KeyRepository, 'spendUses'>) {
    this.#store = store;
  }

  /** Spends one credit of `lineage`: true when there was one, false when none is left. */
  take(lineage: string): Promise<boolean> {
    return new Promise<boolean>((resolve, reject) => {
      const list = this.#pending.get(lineage);
      if (list === undefined) this.#pending.set(lineage, [{ resolve, reject }]);
      else list.push({ resolve, reject });
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => this.#flush());
      }
    });
  }

  #flush(): void {
    this.#scheduled = false;
    const batch = this.#pending;
    this.#pending = new Map();
    const wanted = new Map<string, number>();
    for (const [lineage, list] of batch) wanted.set(lineage, list.length);
    this.#store.spendUses(wanted).then(
      (granted) => {
        for (const [lineage, list] of batch) {
          // Requests are admitted in arrival order; the store gave no more than it had.
          const got = granted.get(lineage) ?? 0;
          for (let i = 0; i < list.length; i++) list[i]!.resolve(i < got);
        }
      },
      (err: unknown) => {
        for (const list of batch.values()) for (const w of list) w.reject(err);
      },
    );
  }
}

/** `limiter` counting usage credits too (whatever limiter it is: local, Redis, a worker's). */
export function withCredits(limiter: RateLimiter, credits: UsageCredits): RateLimiter {
  return { check: (hits, gate) => limiter.check(hits, gate), gated: limiter.gated === true, connected: () => limiter.connected(), close: () => limiter.close(), credits };
}
