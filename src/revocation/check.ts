import type { Identity } from '../authn/types.js';
import { GatewayError } from '../http/problem.js';

/** The slice of a revocation store the request path uses (docs/reference/request-pipeline.md, step 5). */
export interface RevocationCheck {
  isRevoked(identity: Pick<Identity, 'revocationId' | 'subject' | 'issuedAt' | 'externalRevocationKeys'>): boolean | Promise<boolean>;
  /**
   * Redis only: the same check as Redis keys, which a rate-limit script tests itself — a
   * limited request's limits and revocation then take one command and one round trip, and
   * a revoked credential is never counted. Undefined when the store cannot answer checks
   * right now (not connected, or not yet re-seeded): the request takes the usual path.
   */
  gate?(identity: Pick<Identity, 'revocationId' | 'subject' | 'issuedAt' | 'externalRevocationKeys' | 'method'>): RevocationGate | undefined;
}

/**
 * A revocation check as Redis keys: revoked when any of `present` exists, or when
 * `subject`'s value (a timestamp, ms) is later than `issuedAt`.
 */
export interface RevocationGate {
  readonly present: readonly string[];
  readonly subject: string;
  readonly issuedAt: number;
}

/** The refusal of a revoked credential. */
export function revokedError(method: Identity['method']): GatewayError {
  return method === 'jwt' ? new GatewayError('token-revoked', 'The token has been revoked.') : new GatewayError('key-revoked', 'The API key has been revoked.');
}
