import type { Clock } from '../clock.js';
import { backoff, withTimeout } from './support.js';
import type { ScriptedPipeline, ScriptedRedis } from './redis-script.js';
import { errInfo, throwFirst } from './redis-util.js';
import type { RevocationLogger, RevocationSnapshot, RevocationSource } from './types.js';

/** Size of one pipeline when re-seeding, so a large revocation set does not become one giant write. */
const SEED_CHUNK = 1_000;

/** How the seeder writes entries: the store's key layout and its bounded commands. */
export interface SeedWriter {
  readonly redis: ScriptedRedis;
  readonly sentinelKey: string;
  /** Key and absolute expiry of an id marker; undefined when it need not be written. */
  marker(revocationId: string, until: number | undefined | null): [string, number | undefined] | undefined;
  subjectArgs(subject: string, before: number, until: number | undefined | null): [string, string, string];
  bounded<T>(p: Promise<T>): Promise<T>;
}

export interface RedisSeedOptions {
  readonly source: RevocationSource | undefined;
  readonly writer: SeedWriter;
  readonly logger: RevocationLogger;
  readonly clock: Clock;
  /** Bound on one read of the durable record (ms). */
  readonly loadTimeoutMs: number;
  /** How often the sentinel is verified while connected (0 disables). */
  readonly checkIntervalMs: number;
}

/**
 * Keeps Redis holding every revocation of the durable record: Redis without the seed
 * sentinel has lost (or never had) the markers, and the record is replayed before checks
 * are answered again. Without a source there is nothing to replay and Redis is always
 * taken as seeded.
 */
export class RedisSeed {
  readonly #o: RedisSeedOptions;
  #timer: NodeJS.Timeout | undefined;
  #seeding = false;
  #seeded: boolean;
  /** Bumped on every (re)connect so a slow seed of an old connection cannot mark a new one seeded. */
  #generation = 0;
  #closed = false;

  constructor(options: RedisSeedOptions) {
    this.#o = options;
    this.#seeded = options.source === undefined;
    if (options.source !== undefined && options.checkIntervalMs > 0) {
      this.#timer = setInterval(() => {
        if (options.writer.redis.status === 'ready' && this.#seeded && !this.#seeding) void this.#seed(this.#generation, 0);
      }, options.checkIntervalMs);
      this.#timer.unref();
    }
  }

  /** Whether checks may be answered from Redis. */
  get seeded(): boolean {
    return this.#seeded;
  }

  /** The connection is (again) ready: verify the sentinel, seeding when it is missing. */
  connected(): void {
    const generation = ++this.#generation;
    if (this.#o.source !== undefined) void this.#seed(generation, 0);
  }

  /** The connection closed: what Redis holds is unknown until it is verified again. */
  disconnected(): void {
    if (this.#o.source !== undefined) this.#seeded = false;
  }

  close(): void {
    this.#closed = true;
    this.#generation++;
    if (this.#timer !== undefined) clearInterval(this.#timer);
  }

  /** Idempotent, so instances racing here are harmless. */
  async #seed(generation: number, attempt: number): Promise<void> {
    const w = this.#o.writer;
    this.#seeding = true;
    try {
      const present = await w.bounded(w.redis.exists(w.sentinelKey));
      if (present === 0) {
        // Until the replay is done a check could miss a revocation: refuse them meanwhile.
        this.#seeded = false;
        const snap = await withTimeout(this.#o.source!.loadActive(), this.#o.loadTimeoutMs, 'revocation source');
        await this.#write(snap);
        await w.bounded(w.redis.set(w.sentinelKey, String(this.#o.clock.now())));
        this.#o.logger.warn({ ids: snap.ids.length, subjects: snap.subjects.length }, 'revocation redis had no revocation data; re-seeded from the store');
      }
      if (generation === this.#generation && w.redis.status === 'ready') this.#seeded = true;
      this.#seeding = false;
    } catch (err) {
      this.#seeding = false;
      if (this.#closed || generation !== this.#generation) return;
      this.#o.logger.error({ err: errInfo(err), attempt }, 'revocation redis: seeding from the store failed; retrying');
      this.#seeding = true;
      const t = setTimeout(() => void this.#seed(generation, attempt + 1), backoff(attempt, 200, 5_000));
      t.unref();
    }
  }

  /** Replays a snapshot in pipelines of {@link SEED_CHUNK} commands. */
  async #write(snap: RevocationSnapshot): Promise<void> {
    const w = this.#o.writer;
    for (let i = 0; i < snap.ids.length; i += SEED_CHUNK) {
      const p = w.redis.pipeline();
      for (const r of snap.ids.slice(i, i + SEED_CHUNK)) {
        const m = w.marker(r.revocationId, r.until);
        if (m === undefined) continue;
        if (m[1] === undefined) p.set(m[0], '1');
        else p.set(m[0], '1', 'PXAT', m[1]);
      }
      throwFirst(await w.bounded(p.exec()));
    }
    for (let i = 0; i < snap.subjects.length; i += SEED_CHUNK) {
      const p = w.redis.pipeline() as ScriptedPipeline;
      for (const s of snap.subjects.slice(i, i + SEED_CHUNK)) p.portcullisRevokeSubject(...w.subjectArgs(s.subject, s.before, s.until));
      throwFirst(await w.bounded(p.exec()));
    }
  }
}
