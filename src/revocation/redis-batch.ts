import type { Redis } from 'ioredis';
import { DeadlineSweep } from '../util/deadline-sweep.js';

/** What the batcher tells its owner. */
export interface BatchHooks {
  /** Redis answered an MGET (whether or not in time). */
  answered(): void;
  /** A batch failed (an error, or no answer by its deadline): settle its checks. */
  failed(batch: CheckBatch, err: unknown): void;
}

/**
 * Revocation checks batched per turn of the event loop: every check queued during one turn
 * is sent as one MGET, so requests read from different sockets in the same poll phase share
 * one command and one round trip.
 *
 * Every MGET is bounded by `timeout`, but not with ioredis's `commandTimeout`: that arms a
 * timer per command (see RedisRevocationStore). The batches in flight are swept by one
 * {@link DeadlineSweep} instead.
 */
export class MgetBatcher {
  readonly #redis: Pick<Redis, 'mget'>;
  readonly #timeout: number;
  readonly #hooks: BatchHooks;
  /** Checks waiting for the MGET of this turn of the event loop. */
  #batch: CheckBatch | undefined;
  /** Batches sent and not yet answered. */
  readonly #inFlight: DeadlineSweep<CheckBatch>;
  readonly #schedule: (send: () => void) => void;

  /** `schedule` sends a batch on the next turn (a {@link RedisTurn}'s, shared with the rate limits). */
  constructor(redis: Pick<Redis, 'mget'>, timeout: number, hooks: BatchHooks, schedule: (send: () => void) => void) {
    this.#redis = redis;
    this.#schedule = schedule;
    this.#timeout = timeout;
    this.#hooks = hooks;
    this.#inFlight = new DeadlineSweep(timeout, (b, err) => this.#hooks.failed(b, err));
  }

  /**
   * Queues one check: revoked when the id marker or any external key is present, or the
   * subject's "issued before" timestamp is later than `issuedAt`.
   */
  check(idKey: string, subjectKey: string, external: readonly string[] | undefined, issuedAt: number): Promise<boolean> {
    let batch = this.#batch;
    if (batch === undefined) {
      batch = this.#batch = { keys: [], checks: [], deadline: performance.now() + this.#timeout };
      this.#schedule(this.#sendBatch);
    }
    const b = batch;
    return new Promise<boolean>((resolve, reject) => {
      const idSlot = b.keys.push(idKey, subjectKey) - 2;
      // The fronted API's own keys ride in the same MGET, after the check's two.
      const end = external === undefined ? idSlot + 2 : b.keys.push(...external);
      b.checks.push({ idSlot, subjectSlot: idSlot + 1, end, issuedAt, resolve, reject });
    });
  }

  /** Stops the sweeper (the owner is closing). */
  close(): void {
    this.#inFlight.close();
  }

  /** Sends every check queued during this turn of the event loop as one MGET. */
  readonly #sendBatch = (): void => {
    const batch = this.#batch;
    this.#batch = undefined;
    if (batch === undefined) return;
    this.#inFlight.add(batch);
    this.#redis.mget(batch.keys).then(
      (r) => {
        this.#hooks.answered();
        // Already failed by the sweep: the answer came too late.
        if (!this.#inFlight.settle(batch)) return;
        for (const c of batch.checks) {
          if (r[c.idSlot] !== null || anyPresent(r, c.subjectSlot + 1, c.end)) {
            c.resolve(true);
            continue;
          }
          const before = r[c.subjectSlot];
          c.resolve(before !== null && before !== undefined && c.issuedAt < Number(before));
        }
      },
      (err: unknown) => {
        if (this.#inFlight.settle(batch)) this.#hooks.failed(batch, err);
      },
    );
  };
}

export interface PendingCheck {
  readonly idSlot: number;
  readonly subjectSlot: number;
  /** One past the check's last key: slots after `subjectSlot` up to here are external keys. */
  readonly end: number;
  readonly issuedAt: number;
  readonly resolve: (revoked: boolean) => void;
  readonly reject: (err: unknown) => void;
}

/**
 * The checks of one turn and their keys, two per check (id marker, subject timestamp) and
 * its external keys if any.
 * Keys are not deduplicated: hashing each one into a map cost more than Redis spends
 * reading a key twice.
 */
export interface CheckBatch {
  readonly keys: string[];
  readonly checks: PendingCheck[];
  /** `performance.now()` by which the answer must have come: the first check's time plus the timeout. */
  readonly deadline: number;
}

function anyPresent(values: Array<string | null>, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (values[i] !== null) return true;
  return false;
}
