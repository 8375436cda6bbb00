import type { Identity } from '../authn/types.js';
import { GatewayError } from '../http/problem.js';

/** The slice of a revocation store the request path uses (docs/reference/request-pipeline.md, step 5). */
export interface RevocationCheck {
  isRevoked(identity: Pick<Identity, 'revocationId' | 'subject' | 'issuedAt' | 'externalRevocationKeys'>): boolean | Promise<boolean>;
  /**
   * Redis only: the same check as Redis keys a rate-limit script can test itself, so that
   * a request's limits are counted in the round trip of its revocation check and never
   * for a revoked credential. Undefined without Redis.
   */
  gate?(identity: Pick<Identity, 'revocationId' | 'subject' | 'issuedAt' | 'externalRevocationKeys' | 'method'>): RevocationGate;
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
