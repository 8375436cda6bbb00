import type { Identity } from '../authn/types.js';
import { GatewayError } from '../http/problem.js';
import { hitsFor, type CompiledPolicy } from './policy.js';
import type { LimitVerdict, RateLimiter } from './types.js';

/** What the limits need of an admitted request. */
export interface Limited {
  readonly identity: Identity | null;
  readonly clientIp: string;
  readonly route: { readonly label: string };
}

/** Checks a request against its route's policies; undefined when the route has none. */
export function checkLimits(limiter: RateLimiter | undefined, policies: readonly CompiledPolicy[], d: Limited): LimitVerdict | Promise<LimitVerdict> | undefined {
  if (limiter === undefined || policies.length === 0) return undefined;
  return limiter.check(hitsFor(policies, d.identity, d.clientIp, d.route.label));
}

/**
 * Runs a request through its route's limits: `admit` with the RateLimit headers to add
 * (none when the route has no policy), or `refuse` with the 429 or the limiter's failure.
 * Synchronous when the limiter is.
 */
export function withLimits(
  limiter: RateLimiter | undefined,
  policies: readonly CompiledPolicy[],
  d: Limited,
  admit: (headers: Record<string, string> | undefined) => void,
  refuse: (err: unknown) => void,
): void {
  let v: LimitVerdict | Promise<LimitVerdict> | undefined;
  try {
    v = checkLimits(limiter, policies, d);
  } catch (err) {
    refuse(err);
    return;
  }
  if (v === undefined) {
    admit(undefined);
    return;
  }
  const decided = (verdict: LimitVerdict) => (verdict.admitted ? admit(limitHeaders(verdict)) : refuse(limitRefusal(verdict)));
  if (v instanceof Promise) v.then(decided, refuse);
  else decided(v);
}

/** IETF `RateLimit-Policy` / `RateLimit` for the policy closest to its limit. */
export function limitHeaders(v: LimitVerdict): Record<string, string> {
  return {
    'ratelimit-policy': v.policy.header,
    ratelimit: `"${v.policy.name}";r=${v.remaining};t=${Math.ceil(v.retryAfterMs / 1000)}`,
  };
}

/** The 429 for a refused verdict: `Retry-After` and the RateLimit headers, labelled with its policy. */
export function limitRefusal(v: LimitVerdict): GatewayError {
  const seconds = Math.max(1, Math.ceil(v.retryAfterMs / 1000));
  const err = new GatewayError('rate-limited', `Rate limit "${v.policy.name}" reached (${v.policy.limit} per ${v.policy.windowMs / 1000}s); retry in ${seconds}s.`, {
    headers: { 'retry-after': String(seconds), ...limitHeaders(v) },
  });
  err.policy = v.policy.name;
  return err;
}
