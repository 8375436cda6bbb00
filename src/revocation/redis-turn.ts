import type { Redis } from 'ioredis';

/**
 * The turns of one Redis command connection: everything its users send during one turn of
 * the event loop (the revocation checks' MGET, the rate limits' script) is sent on the
 * next turn with the socket corked — one write for all of it, and one round trip.
 */
export class RedisTurn {
  readonly redis: Redis;
  #jobs: (() => void)[] | undefined;

  constructor(redis: Redis) {
    this.redis = redis;
  }

  /** Runs `send` on the next turn, in one write with every other send of this turn. */
  readonly schedule = (send: () => void): void => {
    if (this.#jobs === undefined) {
      this.#jobs = [];
      setImmediate(this.#run);
    }
    this.#jobs.push(send);
  };

  readonly #run = (): void => {
    const jobs = this.#jobs!;
    this.#jobs = undefined;
    const stream = this.redis.status === 'ready' ? this.redis.stream : undefined;
    stream?.cork();
    try {
      for (const send of jobs) send();
    } finally {
      stream?.uncork();
    }
  };
}
