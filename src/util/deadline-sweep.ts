/** Something waiting for an answer until `deadline` (`performance.now()` time). */
export interface Deadlined {
  readonly deadline: number;
}

/**
 * Commands in flight on one connection, each bounded by a deadline, swept by one interval
 * timer that runs only while there are some — not a timer per command: under load, a timer
 * per command kept megabytes of young objects alive into every scavenge. Items are swept
 * oldest first (a connection answers in order, and deadlines follow the sending order).
 */
export class DeadlineSweep<T extends Deadlined> {
  readonly #inFlight = new Set<T>();
  #timer: NodeJS.Timeout | undefined;
  readonly #every: number;
  readonly #timeout: number;
  readonly #expire: (item: T, err: Error) => void;
  readonly #what: string;

  /**
   * `timeout`: the commands' bound (the sweep runs every tenth of it, 5–50 ms). `expire`: an
   * item whose deadline passed, with the error that says so (`<what> did not answer within …`).
   */
  constructor(timeout: number, expire: (item: T, err: Error) => void, what = 'redis') {
    this.#every = Math.max(5, Math.min(50, Math.floor(timeout / 10)));
    this.#timeout = timeout;
    this.#expire = expire;
    this.#what = what;
  }

  add(item: T): void {
    this.#inFlight.add(item);
    if (this.#timer === undefined) {
      this.#timer = setInterval(this.#sweep, this.#every);
      this.#timer.unref();
    }
  }

  /** The answer came: true if it is in time (the item was still waiting), false if it was already expired. */
  settle(item: T): boolean {
    return this.#inFlight.delete(item);
  }

  close(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  readonly #sweep = (): void => {
    const now = performance.now();
    for (const item of this.#inFlight) {
      if (item.deadline > now) break;
      this.#inFlight.delete(item);
      this.#expire(item, new Error(`${this.#what} did not answer within ${this.#timeout} ms`));
    }
    if (this.#inFlight.size === 0) this.close();
  };
}
