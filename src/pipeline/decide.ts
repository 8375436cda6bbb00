import type { IncomingHttpHeaders } from 'node:http';
import type { Credential, Identity } from '../authn/types.js';
import { GatewayError } from '../http/problem.js';
import { checkAmbiguity } from '../http/guard.js';
import { normalizeTarget } from '../http/normalize-path.js';
import { hasMethodOverride } from '../http/query-names.js';
import { foldCase, hasDotLikeSegment, hostName, matchPath, type CompiledRoute } from '../http/match.js';
import { extractCredential } from '../credentials/extract.js';
import { authorize } from '../authz/authorize.js';
import { isLimited } from '../limits/apply.js';
import type { CompiledPolicy } from '../limits/policy.js';
import type { LimitVerdict } from '../limits/types.js';
import { unmapIPv4 as plainIp } from '../util/cidr.js';
import type { Runtime } from '../runtime.js';
import { revokedError, type RevocationCheck } from '../revocation/check.js';
import { HEADER_VALUE } from '../keys/validate.js';

/** What the pipeline looks at: a live request, or one described to `explain` / forward-auth. */
export interface RequestFacts {
  readonly method: string;
  readonly target: string;
  readonly headers: IncomingHttpHeaders;
  readonly rawHeaders: readonly string[];
  readonly peerIp: string;
  /** The host the request was for, when not its own `Host` (forward-auth: X-Forwarded-Host). */
  readonly host?: string | undefined;
}

/** The outcome of steps 0–6 for an admitted request. */
export interface Decision {
  readonly route: CompiledRoute;
  readonly path: string;
  /** Query string to forward (leading `?` or empty), credential parameters removed. */
  readonly query: string;
  readonly identity: Identity | null;
  readonly credential: Credential | null;
  readonly clientIp: string;
  readonly peerTrusted: boolean;
  /** The request's limits, checked in the round trip of its revocation check ({@link EarlyLimits}). */
  readonly limits?: Promise<LimitVerdict> | undefined;
}

/**
 * Starts a limited request's rate limits together with its revocation check, for a request
 * authorized as `d` unless its credential is revoked; undefined when they cannot go early.
 * The verdict's `revoked` then answers the revocation check (undefined: not answered).
 */
export type EarlyLimits = (policies: readonly CompiledPolicy[], d: Decision) => Promise<LimitVerdict> | undefined;

/**
 * An ambiguous request leaves the rest of its connection ambiguous too: where its body ends
 * (and so where a next request would start) is exactly what is in doubt. Its refusal closes
 * the connection.
 */
export const CLOSE_CONNECTION: Readonly<Record<string, string>> = Object.freeze({ connection: 'close' });

/** Steps 0–2: refuse ambiguity, normalize, match. Throws GatewayError. */
export function route(rt: Runtime, facts: RequestFacts): { route: CompiledRoute; path: string; query: string } {
  const reason = checkAmbiguity(facts.rawHeaders, rt.guard);
  if (reason !== null) throw new GatewayError('bad-request', reason, { headers: CLOSE_CONNECTION });
  const n = normalizeTarget(facts.target, { allowPathParams: rt.config.allowPathParams });
  if (!n.ok) throw new GatewayError('bad-request', n.reason);
  if (hasDotLikeSegment(n.path)) throw new GatewayError('bad-request', 'A path segment made of dots and spaces (such as "..." or ".. ") reads as "." or ".." to servers that trim segments.');
  // The gateway's own endpoints answer only their exact path (pipeline/handler); any other
  // spelling of one (`//.portcullis/logout`, `/%2Eportcullis/…`, `/x/../.portcullis/…`)
  // is never proxied either, or a client would think it logged out while the upstream got
  // the request.
  if (isGatewayPath(n.path)) throw new GatewayError('route-not-found', `No route for ${facts.method} ${n.path}: /.portcullis/ paths are the gateway's own, reached by their exact path only.`);
  if (n.query.length > 1 && hasMethodOverride(n.query)) {
    throw new GatewayError('bad-request', 'The query carries a method override (_method): servers that honour it would run another method than the one the route was chosen for.');
  }
  if (facts.host === undefined && forwardedHostDisagrees(rt, facts)) {
    throw new GatewayError('bad-request', 'X-Forwarded-Host names another host than Host, and routes here depend on the host.');
  }
  const r = matchPath(rt.routes, facts.method, hostName(facts.host ?? facts.headers.host), n.path);
  if (r === 'case') throw new GatewayError('bad-request', 'The letter case of the path, or what servers that trim segments drop (trailing dots and spaces, leading spaces, ";" parameters), selects another route than the path as sent.');
  if (r === undefined) throw new GatewayError('route-not-found', `No route for ${facts.method} ${n.path}.`);
  return { route: r, path: n.path, query: n.query };
}

const GATEWAY_PATH = '/.portcullis';

/** `/.portcullis` or a path below it, as a lenient server reads it (any case, trimmed segments: see foldCase). */
export function isGatewayPath(path: string): boolean {
  // `/.portcull` stays ASCII once normalized (only i, s and k have the non-ASCII spellings foldCase reads).
  if (!/portcull/i.test(path)) return false;
  const folded = foldCase(path);
  return folded === GATEWAY_PATH || folded.startsWith(`${GATEWAY_PATH}/`);
}

/**
 * True when a trusted proxy passes on an X-Forwarded-Host that names another host than
 * `Host` while some route matches on the host. The header goes upstream as it came, and
 * many upstreams take their host from it (Rails always, Express behind "trust proxy"), while
 * routes are chosen by `Host`; proxies that do not set it pass on the client's own.
 */
function forwardedHostDisagrees(rt: Runtime, facts: RequestFacts): boolean {
  const xfh = facts.headers['x-forwarded-host'];
  if (xfh === undefined || xfh === '' || !rt.isTrustedProxy(plainIp(facts.peerIp)) || !rt.routes.some((r) => r.host !== null)) return false;
  return typeof xfh !== 'string' || xfh.includes(',') || hostName(xfh) !== hostName(facts.headers.host);
}

/**
 * The address the request comes from: the socket peer, or — only when the peer is a
 * trusted proxy — the nearest untrusted address in X-Forwarded-For.
 */
export function clientAddress(rt: Runtime, facts: RequestFacts): { clientIp: string; peerTrusted: boolean } {
  const peer = plainIp(facts.peerIp);
  if (!rt.isTrustedProxy(peer)) return { clientIp: peer, peerTrusted: false };
  const xff = facts.headers['x-forwarded-for'];
  if (typeof xff !== 'string' || xff === '') return { clientIp: peer, peerTrusted: true };
  const hops = xff.split(',');
  for (let i = hops.length - 1; i >= 0; i--) {
    const ip = plainIp(hops[i]!.trim());
    if (ip && !rt.isTrustedProxy(ip)) return { clientIp: ip, peerTrusted: true };
  }
  return { clientIp: plainIp(hops[0]!.trim()) || peer, peerTrusted: true };
}


/**
 * What a request's early limits say of its credential: revoked or not, tested in the same
 * round trip; undefined when they could not tell (the usual check is made then). Itself
 * undefined when no limits went early.
 */
type EarlyAnswer = Promise<boolean | undefined> | undefined;

function checked(rev: RevocationCheck, identity: Identity, early?: (identity: Identity) => EarlyAnswer): Identity | Promise<Identity> {
  // An upstream's parser trims a value's edges: " admin" would reach it as "admin".
  if (!HEADER_VALUE.test(identity.subject) || !HEADER_VALUE.test(identity.role) || (identity.scopesHeader !== '' && !HEADER_VALUE.test(identity.scopesHeader))) {
    throw new GatewayError(identity.method === 'jwt' ? 'token-invalid' : 'key-invalid', 'The credential carries an identity that cannot be forwarded as HTTP header values.');
  }
  const answered = early?.(identity);
  if (answered !== undefined) return answered.then((r) => (r === undefined ? revocationChecked(rev, identity) : notRevoked(identity, r)));
  return revocationChecked(rev, identity);
}

function revocationChecked(rev: RevocationCheck, identity: Identity): Identity | Promise<Identity> {
  const revoked = rev.isRevoked(identity);
  if (typeof revoked === 'boolean') return notRevoked(identity, revoked);
  return revoked.then((r) => notRevoked(identity, r));
}

function notRevoked(identity: Identity, revoked: boolean): Identity {
  if (revoked) throw revokedError(identity.method);
  return identity;
}

/**
 * Steps 4–5 for an extracted credential: verify it with the authenticator of its kind
 * (when `allow` admits that kind) and check revocation. Synchronous when both are.
 */
export function verifyCredential(
  rt: Runtime,
  rev: RevocationCheck,
  credential: Credential,
  clientIp: string,
  allow: { allowJwt: boolean; allowApiKey: boolean } = { allowJwt: true, allowApiKey: true },
  early?: (identity: Identity) => EarlyAnswer,
): Identity | Promise<Identity> {
  let pending: Identity | Promise<Identity>;
  if (credential.kind === 'jwt') {
    if (!allow.allowJwt) throw new GatewayError('token-invalid', 'This route does not accept JWTs.');
    if (rt.jwt === undefined) throw new GatewayError('token-invalid', 'No JWT issuer is configured.');
    pending = rt.jwt.authenticate(credential, { clientIp });
  } else {
    if (!allow.allowApiKey) throw new GatewayError('key-invalid', 'This route does not accept API keys.');
    if (rt.apiKey === undefined) throw new GatewayError('key-invalid', 'API keys are not enabled.');
    pending = rt.apiKey.authenticate(credential, { clientIp });
  }
  if (pending instanceof Promise) return pending.then((id) => checked(rev, id, early));
  return checked(rev, pending, early);
}

function admitted(base: Omit<Decision, 'identity'>, identity: Identity): Decision {
  authorize(base.route, identity, base.clientIp);
  return { ...base, identity };
}

/**
 * Steps 0–6 of the pipeline. Returns synchronously when nothing asynchronous is needed
 * (public routes, cached credentials with an in-process revocation set). With `early`, a
 * request that has limits and is authorized starts them before its revocation check, which
 * their answer then replaces; the decision carries them (`limits`).
 */
export function decide(rt: Runtime, rev: RevocationCheck, facts: RequestFacts, early?: EarlyLimits): Decision | Promise<Decision> {
  const m = route(rt, facts);
  try {
    const d = decideRoute(rt, rev, facts, m, early);
    if (d instanceof Promise) return d.catch((err: unknown) => { throw located(err, m); });
    return d;
  } catch (err) {
    throw located(err, m);
  }
}

/** Labels a refusal with the route and path it happened on, for the log line and metrics. */
function located(err: unknown, m: { route: CompiledRoute; path: string }): unknown {
  if (err instanceof GatewayError) {
    err.route = m.route.label;
    err.path = m.path;
  }
  return err;
}

function decideRoute(rt: Runtime, rev: RevocationCheck, facts: RequestFacts, m: { route: CompiledRoute; path: string; query: string }, early?: EarlyLimits): Decision | Promise<Decision> {
  const { clientIp, peerTrusted } = clientAddress(rt, facts);
  if (m.route.public) {
    const query = rt.extract.queryParams.length ? extractCredential(facts.headers, m.query, rt.extract).query : m.query;
    return { route: m.route, path: m.path, query, identity: null, credential: null, clientIp, peerTrusted };
  }
  const ex = extractCredential(facts.headers, m.query, rt.extract);
  const credential = ex.credential;
  if (credential === null) throw new GatewayError('token-missing', 'This route requires a bearer token or an API key.');
  const base = { route: m.route, path: m.path, query: ex.query, credential, clientIp, peerTrusted };
  // Only a request with limits goes early; its decision, made then, is the one returned.
  let made: Decision | undefined;
  const policies = rt.routeLimits[m.route.index]!;
  const onIdentity = early === undefined ? undefined : (identity: Identity): EarlyAnswer => {
    if (!isLimited(policies, identity)) return undefined;
    let d: Decision;
    try {
      d = admitted(base, identity);
    } catch {
      return undefined; // refused by authorization: said once the revocation check has answered
    }
    const limits = early(policies, d);
    made = limits === undefined ? d : { ...d, limits };
    return limits?.then((v) => v.revoked, () => undefined);
  };
  const id = verifyCredential(rt, rev, credential, clientIp, m.route, onIdentity);
  if (id instanceof Promise) return id.then((i) => (made !== undefined && made.identity === i ? made : admitted(base, i)));
  return admitted(base, id);
}
