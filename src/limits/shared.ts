import { GatewayError } from '../http/problem.js';
import type { LocalRateLimiter } from './local.js';
import type { Hit } from './policy.js';
import type { LimitVerdict, RateLimiter } from './types.js';
import { TurnBatch } from '../util/turn-batch.js';

interface Pending {
  readonly hits: readonly Hit[];
  resolve(v: LimitVerdict): void;
  reject(e: unknown): void;
}

/** One request's buckets as they travel to the primary: policy fields, not the compiled object. */
type WireHit = readonly [name: string, limit: number, windowMs: number, bucket: string];
type WireVerdict = readonly [admitted: 0 | 1, policyIndex: number, remaining: number, retryAfterMs: number];

/** How a worker reaches the primary. */
export interface PrimaryLink {
  call<T>(op: string, arg: unknown, timeoutMs: number): Promise<T>;
}

/**
 * Rate limits without Redis, for the workers of one instance: the primary keeps the
 * buckets; each worker sends the checks of one event-loop turn as one message and gets
 * one answer, so the workers together admit at most `limit` per bucket.
 */
export class WorkerRateLimiter implements RateLimiter {
  readonly #batch = new TurnBatch<Pending>((batch) => this.#send(batch));

  private readonly link: PrimaryLink;
  private readonly timeoutMs: number;
  constructor(
    link: PrimaryLink,
    timeoutMs = 1_000,
  ) {
    this.link = link;
    this.timeoutMs = timeoutMs;
  }

  check(hits: readonly Hit[]): Promise<LimitVerdict> {
    return new Promise<LimitVerdict>((resolve, reject) => this.#batch.add({ hits, resolve, reject }));
  }

  readonly #send = (batch: Pending[]): void => {
    const wire: WireHit[][] = batch.map((p) => p.hits.map((h) => [h.policy.name, h.policy.limit, h.policy.windowMs, h.bucket] as const));
    this.link.call<WireVerdict[]>('limit', wire, this.timeoutMs).then(
      (out) => {
        batch.forEach((p, i) => {
          const [admitted, at, remaining, retryAfterMs] = out[i]!;
          p.resolve({ admitted: admitted === 1, policy: p.hits[at]!.policy, remaining, retryAfterMs });
        });
      },
      (err: unknown) => {
        const e = new GatewayError('rate-limit-unavailable', 'Rate limits could not be checked; retry shortly.', { cause: err, headers: { 'retry-after': '1' } });
        for (const p of batch) p.reject(e);
      },
    );
  };

  connected(): boolean {
    return true;
  }

  async close(): Promise<void> {}
}

/** The primary's side: answers a worker's batch from its own in-process buckets. */
export function answerLimits(limiter: LocalRateLimiter): (arg: unknown) => WireVerdict[] {
  return (arg) => {
    const batch = arg as WireHit[][];
    return batch.map((wire) => {
      const hits: Hit[] = wire.map(([name, limit, windowMs, bucket]) => ({ policy: { name, limit, windowMs, by: 'global', header: '' }, bucket }));
      const v = limiter.check(hits);
      return [v.admitted ? 1 : 0, Math.max(0, hits.findIndex((h) => h.policy === v.policy)), v.remaining, v.retryAfterMs] as const;
    });
  };
}
