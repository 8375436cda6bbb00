import type { Identity } from '../authn/types.js';

/** What a bucket is counted by (docs/reference/rate-limits.md). */
export type LimitBy = 'credential' | 'subject' | 'ip' | 'route' | 'global';

/** One named policy, compiled once per config. */
export interface CompiledPolicy {
  readonly name: string;
  readonly limit: number;
  readonly windowMs: number;
  readonly by: LimitBy;
  /** `RateLimit-Policy` member for this policy, built once. */
  readonly header: string;
}

/** One bucket a request is counted in. */
export interface Hit {
  readonly policy: CompiledPolicy;
  /** The bucket's identity inside its policy. */
  readonly bucket: string;
}

export function compilePolicy(p: { name: string; limit: number; window: number; by: LimitBy }): CompiledPolicy {
  return { name: p.name, limit: p.limit, windowMs: p.window, by: p.by, header: `"${p.name}";q=${p.limit};w=${Math.max(1, Math.ceil(p.window / 1000))}` };
}

/**
 * The bucket of a request under a policy. `credential` counts a key's whole lineage (its
 * rotation successors and refreshed descendants share one bucket, so neither resets it) or
 * a JWT's issuer and subject; without a credential (a public route) it and `subject` count
 * by client address.
 */
export function bucketOf(by: LimitBy, identity: Identity | null, clientIp: string, routeLabel: string): string {
  switch (by) {
    case 'credential':
      if (identity === null) return `ip:${clientIp}`;
      return identity.method === 'apiKey' ? `key:${identity.lineage ?? identity.keyId ?? identity.revocationId}` : `jwt:${identity.issuer ?? ''}:${identity.subject}`;
    case 'subject':
      return identity === null ? `ip:${clientIp}` : `sub:${identity.subject}`;
    case 'ip':
      return `ip:${clientIp}`;
    case 'route':
      return `route:${routeLabel}`;
    case 'global':
      return 'global';
  }
}

export function hitsFor(policies: readonly CompiledPolicy[], identity: Identity | null, clientIp: string, routeLabel: string): Hit[] {
  return policies.map((policy) => ({ policy, bucket: bucketOf(policy.by, identity, clientIp, routeLabel) }));
}
