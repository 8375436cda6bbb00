import type { Identity } from '../authn/types.js';
import type { AssertionSigner } from './assertion.js';
import { identityHeaders, type ForwardPlan } from './headers.js';

/** What stating an identity needs: the header names and, when configured, the assertion signer. */
export interface IdentityPlan {
  readonly forward: Pick<ForwardPlan, 'names'>;
  readonly assertion: { readonly header: string; readonly signer: AssertionSigner } | undefined;
}

/** Where identity headers go: the upstream's flat header list, or a header object (websocket handshakes, forward-auth answers). */
export type HeaderSink = string[] | Record<string, string | string[] | number | undefined>;

function put(out: HeaderSink, name: string, value: string): void {
  if (Array.isArray(out)) out.push(name, value);
  else out[name] = value;
}

/**
 * Sets the verified identity's headers and its signed assertion for `audience` (the
 * upstream's name) on `out`, then calls `done` — at once when the assertion is cached (the
 * common case), after signing otherwise. Signing failures go to `fail`. The one place
 * identity reaches an upstream or a forward-auth answer. The values were computed once,
 * when the identity was verified (the scopes joined, the role interned): what is stated
 * per request is the names and those strings, and nothing is kept per cached identity
 * besides it (a list per identity cost ~290 B of every cached key).
 */
export function applyIdentity(out: HeaderSink, plan: IdentityPlan, identity: Identity, audience: string, done: () => void, fail: (err: unknown) => void): void {
  if (Array.isArray(out)) {
    const n = plan.forward.names;
    out.push(n.subject, identity.subject, n.role, identity.role, n.scopes, identity.scopesHeader, n.method, identity.method);
    if (identity.keyId !== undefined) out.push(n.keyId, identity.keyId);
  } else identityHeaders(out, plan.forward.names, identity);
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
