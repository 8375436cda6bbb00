import { Redis } from 'ioredis';
import { GatewayError } from '../http/problem.js';
import { backoff } from '../revocation/support.js';
import type { RevocationGate } from '../revocation/check.js';
import { HIT_LUA, packBatch, readVerdicts } from './redis-script.js';
import type { RedisTurn } from '../revocation/redis-turn.js';
import { TurnBatch } from '../util/turn-batch.js';
import { DeadlineSweep } from '../util/deadline-sweep.js';
import type { Hit } from './policy.js';
import type { LimitVerdict, RateLimiter } from './types.js';


/** A script call in flight: its requests, and when it is given up. */
interface SentBatch {
  readonly batch: readonly Pending[];
  readonly deadline: number;
}

interface Pending {
  readonly hits: readonly Hit[];
  readonly gate: RevocationGate | undefined;
  resolve(v: LimitVerdict): void;
  reject(e: unknown): void;
}

/** Keys then arguments in one array, which the client flattens (never spread into the call: see #send). */
type ScriptedRedis = Redis & { portcullisHit(numKeys: number, keysAndArgs: readonly (string | number)[]): Promise<number[]> };

export interface RedisLimiterOptions {
  url: string;
  /** Key prefix (tests use their own). */
  prefix?: string;
  /** `allow`: while Redis is away each instance enforces the limits alone; `deny`: 503. */
  onError: 'allow' | 'deny';
  /** The in-process limiter used meanwhile with `onError: allow`. */
  fallback: RateLimiter;
  timeoutMs?: number;
  /** Fixed clock for tests; by default Redis's own. */
  now?: () => number;
  onUnavailable?: (err: unknown) => void;
  /** Connect on the first check instead of at once (no route has a policy yet). */
  lazy?: boolean;
  /**
   * The revocation store's command connection and its turns: the script of a turn goes out
   * in the same write as the revocation checks' MGET (one round trip for both). Without it
   * the limiter opens a connection of its own.
   */
  shared?: RedisTurn;
}

/**
 * Rate limits shared by every instance through Redis: the checks of one event-loop turn go
 * out as one script call — one round trip for many requests — and are decided atomically.
 */
export class RedisRateLimiter implements RateLimiter {
  readonly #redis: ScriptedRedis;
  readonly #prefix: string;
  readonly #timeout: number;
  readonly #batch: TurnBatch<Pending>;
  /** Script calls sent and not yet answered, each bounded by the timeout (one sweep timer, not one each). */
  readonly #inFlight: DeadlineSweep<SentBatch>;
  /** The connection is the revocation store's: it is not ours to close. */
  readonly #owned: boolean;
  /** Set while the lazy connection is first being made: checks wait for it. */
  #connecting: Promise<boolean> | undefined;

  private readonly opts: RedisLimiterOptions;
  constructor(opts: RedisLimiterOptions) {
    this.opts = opts;
    this.#prefix = opts.prefix ?? 'portcullis:rl:';
    this.#timeout = opts.timeoutMs ?? 1_000;
    this.#owned = opts.shared === undefined;
    this.#redis = (opts.shared?.redis ??
      new Redis(opts.url, {
        connectionName: 'portcullis-ratelimit',
        connectTimeout: 2_000,
        retryStrategy: (times: number) => backoff(times - 1, 50, 2_000),
        enableOfflineQueue: false,
        maxRetriesPerRequest: 0,
        autoResendUnfulfilledCommands: false,
        lazyConnect: opts.lazy === true,
      })) as ScriptedRedis;
    this.#batch = new TurnBatch<Pending>((batch) => this.#send(batch), opts.shared?.schedule);
    this.#inFlight = new DeadlineSweep<SentBatch>(this.#timeout, (sent, err) => this.#failed(sent.batch, err));
    this.#redis.defineCommand('portcullisHit', { lua: HIT_LUA });
    if (this.#owned) {
      this.#redis.on('error', () => {
        // Reported per failed check through onUnavailable; the connection retries by itself.
      });
    }
  }

  /** Counts only requests whose revocation gate passes, in the same script call. */
  readonly gated = true;

  check(hits: readonly Hit[], gate?: RevocationGate): LimitVerdict | Promise<LimitVerdict> {
    if (this.#redis.status === 'wait' || this.#connecting !== undefined) {
      // The first limit ever checked (a route's policy, or a key's own limit): connect now,
      // and count the checks that arrive meanwhile in Redis once connected — never locally,
      // uncounted by the fleet.
      if (this.#connecting === undefined) {
        this.#redis.connect().catch(() => undefined);
        this.#connecting = this.ready(this.#timeout).finally(() => {
          this.#connecting = undefined;
        });
      }
      return this.#connecting.then((up) => (up ? this.check(hits, gate) : this.#unavailable(hits, new Error('redis did not connect in time'))));
    }
    if (this.#redis.status !== 'ready') return this.#unavailable(hits, new Error(`redis connection ${this.#redis.status}`));
    return new Promise<LimitVerdict>((resolve, reject) => this.#batch.add({ hits, gate, resolve, reject }));
  }

  readonly #send = (batch: Pending[]): void => {
    const packed = packBatch(batch, this.#prefix, this.opts.now ? this.opts.now() : '');
    const sent: SentBatch = { batch, deadline: performance.now() + this.#timeout };
    this.#inFlight.add(sent);
    // One array, not spread into the call: one client pipelining on one connection puts tens
    // of thousands of requests in a turn, and as call arguments those overflowed the stack —
    // a RangeError out of the turn's callback, which ended the process.
    this.#redis.portcullisHit(packed.numKeys, packed.list).then(
      (out) => {
        // Already failed by the sweep: the answer came too late.
        if (!this.#inFlight.settle(sent)) return;
        const verdicts = readVerdicts(batch, packed.groups, out);
        for (let i = 0; i < batch.length; i++) batch[i]!.resolve(verdicts[i]!);
      },
      (err: unknown) => {
        if (this.#inFlight.settle(sent)) this.#failed(batch, err);
      },
    );
  };

  #failed(batch: readonly Pending[], err: unknown): void {
    for (const p of batch) {
      const v = this.#unavailable(p.hits, err);
      if (v instanceof Promise) v.catch(p.reject);
      else p.resolve(v);
    }
  }

  #unavailable(hits: readonly Hit[], err: unknown): LimitVerdict | Promise<LimitVerdict> {
    this.opts.onUnavailable?.(err);
    if (this.opts.onError === 'allow') return this.opts.fallback.check(hits);
    return Promise.reject(new GatewayError('rate-limit-unavailable', 'Rate limits could not be checked; retry shortly.', { cause: err, headers: { 'retry-after': '1' } }));
  }

  /** Ready to share limits, or not needed yet (never connected: no route has a policy). */
  connected(): boolean {
    return this.#redis.status === 'ready' || this.#redis.status === 'wait';
  }

  /** Resolves once connected (or false after `timeoutMs`). */
  async ready(timeoutMs = 5_000): Promise<boolean> {
    const until = Date.now() + timeoutMs;
    while (this.#redis.status !== 'ready') {
      if (Date.now() > until) return false;
      await new Promise((r) => setTimeout(r, 10));
    }
    return true;
  }

  async close(): Promise<void> {
    this.#inFlight.close();
    if (this.#owned) this.#redis.disconnect();
    await this.opts.fallback.close();
  }
}
