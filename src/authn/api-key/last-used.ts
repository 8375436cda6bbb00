import type { KeyRepository } from '../../store/types.js';

/**
 * `last used` times of keys, recorded in memory on every accepted request and written in
 * one batch every `interval` ms (and on close): the request path never waits on a write.
 */
export class LastUsedBatch {
  readonly #store: Pick<KeyRepository, 'touchLastUsed'>;
  readonly #onError: ((err: unknown) => void) | undefined;
  readonly #timer: NodeJS.Timeout;
  #pending = new Map<string, number>();
  #flushing: Promise<void> | undefined;

  constructor(store: Pick<KeyRepository, 'touchLastUsed'>, interval: number, onError: ((err: unknown) => void) | undefined) {
    this.#store = store;
    this.#onError = onError;
    this.#timer = setInterval(() => void this.flush(), Math.max(1000, interval));
    this.#timer.unref();
  }

  record(keyId: string, at: number): void {
    this.#pending.set(keyId, at);
  }

  /** Writes the pending times in one batch; a failed write keeps them for the next. */
  flush(): Promise<void> {
    if (this.#flushing !== undefined) return this.#flushing;
    if (this.#pending.size === 0) return Promise.resolve();
    const batch = this.#pending;
    this.#pending = new Map();
    this.#flushing = this.#store
      .touchLastUsed(batch)
      .catch((err: unknown) => {
        // Keep the times for the next flush; newer ones recorded meanwhile win.
        for (const [id, at] of batch) if ((this.#pending.get(id) ?? 0) < at) this.#pending.set(id, at);
        this.#onError?.(err);
      })
      .finally(() => {
        this.#flushing = undefined;
      });
    return this.#flushing;
  }

  /** Stops the timer and writes what is pending. */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    if (this.#flushing !== undefined) await this.#flushing;
    await this.flush();
  }
}
