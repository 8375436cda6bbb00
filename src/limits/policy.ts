import type { Identity } from '../authn/types.js';
import type { CompiledPolicy, LimitBy } from './compile.js';

export { compilePolicy, type CompiledPolicy, type LimitBy } from './compile.js';

/** One bucket a request is counted in. */
export interface Hit {
  readonly policy: CompiledPolicy;
  /** The bucket's identity inside its policy. */
  readonly bucket: string;
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
