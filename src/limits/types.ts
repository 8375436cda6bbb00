import type { RevocationGate } from '../revocation/check.js';
import type { UsageCredits } from './credits.js';
import type { CompiledPolicy, Hit } from './policy.js';

/** The answer for one request: admitted or not, and the bucket closest to its limit. */
export interface LimitVerdict {
  readonly admitted: boolean;
  /** The policy that refused, or the one with the fewest requests left. */
  readonly policy: CompiledPolicy;
  readonly remaining: number;
  /** Milliseconds until a request is admitted again (0 when one would be now). */
  readonly retryAfterMs: number;
  /**
   * The check was gated on a revocation check, answered in Redis in the same step: true
   * when the credential is revoked (nothing was counted). Undefined when no gate was
   * tested (none given, or the limits were counted without Redis).
   */
  readonly revoked?: boolean;
}

/**
 * Counts requests against their buckets: admitted only when every bucket has room, and
 * then counted in each. Synchronous in process, a promise when shared through Redis.
 */
export interface RateLimiter {
  /**
   * With `gate` (only when {@link gated}), the request is counted only if the credential
   * passes that revocation check, tested in the same atomic step.
   */
  check(hits: readonly Hit[], gate?: RevocationGate): LimitVerdict | Promise<LimitVerdict>;
  /** Takes a revocation gate: limits can be checked in the revocation check's round trip. */
  readonly gated?: boolean;
  /** Whether limits are shared as configured (for `/readyz`). */
  connected(): boolean;
  close(): Promise<void>;
  /** Usage credits of keys, spent once the limits admit; absent: credits are not counted. */
  readonly credits?: UsageCredits | undefined;
}

/** Folds per-bucket answers into one verdict (all must admit; report the tightest). */
export function verdictOf(hits: readonly Hit[], admitted: boolean, remaining: readonly number[], retry: readonly number[]): LimitVerdict {
  let at = 0;
  for (let i = 1; i < hits.length; i++) {
    const worse = admitted ? remaining[i]! < remaining[at]! : retry[i]! > retry[at]!;
    if (worse) at = i;
  }
  return { admitted, policy: hits[at]!.policy, remaining: admitted ? remaining[at]! : 0, retryAfterMs: admitted ? 0 : retry[at]! };
}
