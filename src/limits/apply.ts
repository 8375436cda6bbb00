import type { Identity } from '../authn/types.js';
import { GatewayError } from '../http/problem.js';
import { revokedError, type RevocationGate } from '../revocation/check.js';
import { hitsFor, type CompiledPolicy } from './policy.js';
import type { LimitVerdict, RateLimiter } from './types.js';

/** What the limits need of an admitted request. */
export interface Limited {
  readonly identity: Identity | null;
  readonly clientIp: string;
  readonly route: { readonly label: string };
}

/** Whether a request has limits to pass: its route's policies, its key's own limit, or credits. */
export function isLimited(policies: readonly CompiledPolicy[], identity: Identity | null): boolean {
  return policies.length !== 0 || (identity !== null && (identity.rateLimit !== undefined || identity.credits === true));
}

/**
 * Checks a request against its route's policies and its key's own limit (appended, so
 * every limiter counts it like a route policy); undefined when there are none.
 */
export function checkLimits(limiter: RateLimiter | undefined, policies: readonly CompiledPolicy[], d: Limited, gate?: RevocationGate): LimitVerdict | Promise<LimitVerdict> | undefined {
  if (limiter === undefined) return undefined;
  const own = d.identity?.rateLimit;
  const all = own === undefined ? policies : [...policies, own];
  if (all.length === 0) return undefined;
  return limiter.check(hitsFor(all, d.identity, d.clientIp, d.route.label), gate);
}

/**
 * Starts a request's limit check in the round trip of its revocation check (the limiter
 * takes gates and the revocation check offers them: both on Redis), to be handed to
 * {@link withLimits}; undefined when the request has no limits or they cannot go early.
 * Counted only if the credential passes that revocation check, in the same atomic step.
 */
export function earlyLimits(limiter: RateLimiter | undefined, policies: readonly CompiledPolicy[], d: Limited, gateOf: ((identity: Identity) => RevocationGate | undefined) | undefined): Promise<LimitVerdict> | undefined {
  if (limiter?.gated !== true || gateOf === undefined || d.identity === null) return undefined;
  if (policies.length === 0 && d.identity.rateLimit === undefined) return undefined;
  const gate = gateOf(d.identity);
  if (gate === undefined) return undefined;
  const v = checkLimits(limiter, policies, d, gate);
  if (v === undefined) return undefined;
  // Answered at once (the limiter fell back to this process): already counted, so this
  // verdict is the request's (no revocation answer in it: the usual check is made).
  if (!(v instanceof Promise)) return Promise.resolve(v);
  // Handled here in case the request is refused before its limits are read (revoked).
  v.catch(() => undefined);
  return v;
}

/**
 * Runs a request through its limits: the route's policies and the key's own, then (once
 * they admit) one of the key's usage credits. `admit` with the RateLimit headers to add
 * (none without policies), or `refuse` with the 429 or the failure. Synchronous when the
 * limiter is and no credit is spent.
 */
export function withLimits(
  limiter: RateLimiter | undefined,
  policies: readonly CompiledPolicy[],
  d: Limited,
  admit: (headers: Record<string, string> | undefined) => void,
  refuse: (err: unknown) => void,
  early?: Promise<LimitVerdict>,
): void {
  let v: LimitVerdict | Promise<LimitVerdict> | undefined = early;
  if (v === undefined) {
    try {
      v = checkLimits(limiter, policies, d);
    } catch (err) {
      refuse(err);
      return;
    }
  }
  const spend = (headers: Record<string, string> | undefined) => {
    const credits = limiter?.credits;
    const id = d.identity;
    if (credits === undefined || id === null || id.credits !== true) {
      admit(headers);
      return;
    }
    credits.take(id.lineage ?? id.keyId ?? id.revocationId).then((ok) => (ok ? admit(headers) : refuse(quotaExhausted(headers))), refuse);
  };
  if (v === undefined) {
    spend(undefined);
    return;
  }
  const decided = (verdict: LimitVerdict) => {
    // Revoked between the revocation check and the limits' step of the same round trip.
    if (verdict.revoked === true) refuse(revokedError(d.identity?.method ?? 'apiKey'));
    else if (verdict.admitted) spend(limitHeaders(verdict));
    else refuse(limitRefusal(verdict));
  };
  if (v instanceof Promise) v.then(decided, refuse);
  else decided(v);
}

/** The 429 of a key whose lineage has no usage credits left (they do not come back by themselves). */
export function quotaExhausted(headers: Record<string, string> | undefined): GatewayError {
  return new GatewayError('quota-exhausted', 'The usage credits of this API key are spent; ask for more (keys update --uses).', headers === undefined ? undefined : { headers });
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
