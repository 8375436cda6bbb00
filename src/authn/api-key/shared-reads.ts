/** A store read of one key id, and the cache epoch it began in. */
interface SharedRead<T> {
  readonly epoch: number;
  readonly read: Promise<T>;
}

/**
 * Store reads by key id in flight, shared by the different secrets presented for that id
 * meanwhile: a flood of forgeries for one key id costs one read at a time, not one each.
 * A read that began before an eviction (a newer cache epoch) is never joined: it may
 * predate the revocation or update that the eviction announced.
 */
export class SharedReads<T> {
  readonly #reads = new Map<string, SharedRead<T>>();

  /** The read of `id` running in `epoch`, or a new one from `start`; `joined` is called when one is shared. */
  read(id: string, epoch: number, start: () => Promise<T>, joined: () => void): Promise<T> {
    const running = this.#reads.get(id);
    if (running !== undefined && running.epoch === epoch) {
      joined();
      return running.read;
    }
    const read = start();
    const entry: SharedRead<T> = { epoch, read };
    this.#reads.set(id, entry);
    const done = (): void => {
      if (this.#reads.get(id) === entry) this.#reads.delete(id);
    };
    read.then(done, done);
    return read;
  }
}
