import type { Identity } from '../authn/types.js';
import type { AssertionSigner } from './assertion.js';
import { identityHeaders, put, type ForwardPlan, type HeaderSink } from './headers.js';

/** What stating an identity needs: the header names and, when configured, the assertion signer. */
export interface IdentityPlan {
  readonly forward: Pick<ForwardPlan, 'names'>;
  readonly assertion: { readonly header: string; readonly signer: AssertionSigner } | undefined;
}

/**
 * Sets the verified identity's headers and its signed assertion for `audience` (the
 * upstream's name) on `out`, then calls `done` — at once when the assertion is cached (the
 * common case), after signing otherwise. Signing failures go to `fail`. The one place
 * identity reaches an upstream or a forward-auth answer.
 */
export function applyIdentity(out: HeaderSink, plan: IdentityPlan, identity: Identity, audience: string, done: () => void, fail: (err: unknown) => void): void {
  identityHeaders(out, plan.forward.names, identity);
  const assertion = plan.assertion;
  if (assertion === undefined) {
    done();
    return;
  }
  const signed = assertion.signer.sign(identity, audience);
  if (typeof signed === 'string') {
    put(out, assertion.header, signed);
    done();
    return;
  }
  signed.then((token) => {
    put(out, assertion.header, token);
    done();
  }, fail);
}
