import type { Identity } from '../authn/types.js';

/** The slice of a revocation store the request path uses (docs/reference/request-pipeline.md, step 5). */
export interface RevocationCheck {
  isRevoked(identity: Pick<Identity, 'revocationId' | 'subject' | 'issuedAt' | 'externalRevocationKeys'>): boolean | Promise<boolean>;
}
