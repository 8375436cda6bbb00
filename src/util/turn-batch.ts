/**
 * Collects what one event-loop turn adds and hands it over in one go, on the next turn:
 * one round trip (to Redis, to the primary process) for every request of the turn.
 */
export class TurnBatch<T> {
  #items: T[] | undefined;

  /** `schedule` runs the flush on the next turn (by default `setImmediate`; a shared Redis turn, to write with others). */
  private readonly flush: (items: T[]) => void;
  private readonly schedule: (run: () => void) => void;
  constructor(
    flush: (items: T[]) => void,
    schedule: (run: () => void) => void = (run) => {
      setImmediate(run);
    },
  ) {
    this.flush = flush;
    this.schedule = schedule;
  }

  add(item: T): void {
    if (this.#items === undefined) {
      this.#items = [];
      this.schedule(this.#run);
    }
    this.#items.push(item);
  }

  readonly #run = (): void => {
    const items = this.#items!;
    this.#items = undefined;
    this.flush(items);
  };
}
