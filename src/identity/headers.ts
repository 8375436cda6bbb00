import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import type { Credential, Identity } from '../authn/types.js';
import type { IdentityConfig } from '../config/schema.js';
import { HOP_BY_HOP, isClientCertificate, isForwarding, NEVER_FORWARDED, STATED } from '../http/header-names.js';
import { headerNamespace } from './namespace.js';

/** One header's value (Node joins repeated unknown headers already; the type allows a list). */
function joined(v: string | string[] | undefined): string | undefined {
  return typeof v === 'string' || v === undefined ? v : v.join(', ');
}

/** Trace Context headers for the upstream: always the gateway's own, never the client's. */
export interface TraceHeaders {
  readonly traceparent: string;
  readonly tracestate: string | undefined;
}

/** What the forwarding step needs, computed once per config. */
export interface ForwardPlan {
  readonly names: IdentityConfig['headers'];
  /** Every header name we own (identity headers + assertion header). */
  readonly owned: ReadonlySet<string>;
  readonly prefixes: readonly string[];
  /** Headers that carry credentials (removed unless forwardCredential). */
  readonly credentialHeaders: ReadonlySet<string>;
  readonly forwardCredential: boolean;
}

export function forwardPlan(identity: IdentityConfig, keyHeaders: readonly string[]): ForwardPlan {
  const ns = headerNamespace(identity, keyHeaders);
  return {
    names: identity.headers,
    owned: ns.names,
    prefixes: ns.prefixes,
    credentialHeaders: ns.credentialHeaders,
    forwardCredential: identity.forwardCredential,
  };
}

/** True for a header name inside our identity namespace. */
export function isOwnedHeader(plan: ForwardPlan, name: string): boolean {
  if (plan.owned.has(name)) return true;
  for (const p of plan.prefixes) if (name.startsWith(p)) return true;
  return false;
}

export interface ForwardContext {
  readonly clientIp: string;
  readonly peerIp: string;
  readonly peerTrusted: boolean;
  readonly proto: 'http' | 'https';
  readonly requestId: string;
  /** Keep upgrade headers (websocket handshakes). */
  readonly upgrade: boolean;
  /** The gateway's Trace Context for the upstream; the client's never passes on unchanged. */
  readonly trace?: TraceHeaders | undefined;
  /** The credential the gateway verified (null on a public route): with `forwardCredential`, the only one forwarded. */
  readonly verified?: Credential | null | undefined;
}

/**
 * The headers the upstream receives, as a flat `[name, value, …]` list built in one pass
 * (undici takes it as is): everything in our namespace, hop-by-hop, and (from untrusted
 * peers) forwarding headers removed, then the forwarding headers set — so nothing a client
 * sent can survive under a name we set; the identity follows (identity/apply.ts).
 * A body keeps its framing: `Content-Length` passes in its one canonical spelling, and
 * `Transfer-Encoding` stays out of the list, since the client that sends it (undici) states
 * a body of unknown length as chunked, exactly as it arrived. The guard has already refused
 * a `Connection` header naming any header that frames, carries or describes the request.
 */
export function upstreamHeaderList(inbound: IncomingHttpHeaders, plan: ForwardPlan, ctx: ForwardContext): string[] {
  const out: string[] = [];
  const connection = inbound['connection'];
  const named = connection ? connection.toLowerCase().split(',').map((s) => s.trim()) : null;
  const trusted = ctx.peerTrusted;
  for (const name in inbound) {
    if (isOwnedHeader(plan, name)) continue;
    if (HOP_BY_HOP.has(name)) {
      if (ctx.upgrade && name === 'upgrade') out.push(name, inbound[name] as string);
      continue;
    }
    if (named?.includes(name)) continue;
    if (NEVER_FORWARDED.has(name) || (!trusted && isForwarding(name))) continue;
    // The gateway terminated this TLS connection: nobody before it saw a certificate.
    if (ctx.proto === 'https' && isClientCertificate(name)) continue;
    if (plan.credentialHeaders.has(name)) {
      forwardCredential(out, name, inbound, plan, ctx.verified);
      continue;
    }
    if (STATED.has(name)) continue;
    const v = inbound[name];
    if (v === undefined) continue;
    if (typeof v !== 'string') for (const one of v) out.push(name, one);
    // The same length in its one canonical spelling: leading zeros are where parsers differ.
    else if (name === 'content-length' && v.length > 1 && v.charCodeAt(0) === 0x30) out.push(name, v.replace(/^0+(?=\d)/, ''));
    else out.push(name, v);
  }
  if (ctx.upgrade) out.push('connection', 'upgrade');
  const xff = trusted ? inbound['x-forwarded-for'] : undefined;
  out.push('x-forwarded-for', xff ? `${xff}, ${ctx.peerIp}` : ctx.peerIp);
  out.push('x-forwarded-proto', (trusted && joined(inbound['x-forwarded-proto'])) || ctx.proto);
  const host = (trusted && joined(inbound['x-forwarded-host'])) || inbound.host;
  if (host !== undefined) out.push('x-forwarded-host', host);
  out.push('x-request-id', ctx.requestId);
  if (ctx.trace !== undefined) {
    out.push('traceparent', ctx.trace.traceparent);
    if (ctx.trace.tracestate !== undefined) out.push('tracestate', ctx.trace.tracestate);
  }
  return out;
}

/**
 * With `forwardCredential`, the credential the gateway verified goes upstream in the header
 * it came in, as verified: without a connection-string preamble (an upstream that split
 * `a:b:KEY` otherwise than on its last `:` would act on a key the gateway never checked),
 * and alone (an `Authorization: Basic` beside a verified key header is dropped). Nothing
 * was verified on a public route, so nothing goes.
 */
function forwardCredential(out: string[], name: string, inbound: IncomingHttpHeaders, plan: ForwardPlan, verified: Credential | null | undefined): void {
  if (!plan.forwardCredential || verified === null || verified === undefined || verified.source !== name) return;
  if (name !== 'authorization') out.push(name, verified.value);
  else {
    // The guard admitted only `<scheme> SP <value>`.
    const auth = inbound.authorization!;
    out.push(name, `${auth.slice(0, auth.indexOf(' '))} ${verified.value}`);
  }
}

/**
 * {@link upstreamHeaderList} as the header object a websocket handshake (http-proxy-3 over
 * Node's client) takes, with a chunked body's `Transfer-Encoding` restated (Node's client
 * would otherwise write a body raw after a bodiless head, where the upstream reads it as
 * the next request).
 */
export function upstreamHeaders(inbound: IncomingHttpHeaders, plan: ForwardPlan, identity: Identity | null, ctx: ForwardContext): OutgoingHttpHeaders {
  const list = upstreamHeaderList(inbound, plan, ctx);
  const out: Record<string, string | string[]> = {};
  for (let i = 0; i < list.length; i += 2) {
    const name = list[i]!;
    const had = out[name];
    out[name] = had === undefined ? list[i + 1]! : ([] as string[]).concat(had, list[i + 1]!);
  }
  // The guard admits only a lone `chunked`, so this is the framing exactly as it arrived.
  if (inbound['transfer-encoding'] !== undefined) out['transfer-encoding'] = 'chunked';
  if (identity !== null) identityHeaders(out, plan.names, identity);
  return out;
}

/** Where identity headers go: the upstream's flat header list, or a header object (websocket handshakes, forward-auth answers). */
export type HeaderSink = string[] | Record<string, string | string[] | number | undefined>;

/** Sets one header on a sink. */
export function put(out: HeaderSink, name: string, value: string): void {
  if (Array.isArray(out)) out.push(name, value);
  else out[name] = value;
}

/**
 * Sets the identity headers (the upstream's, or forward-auth's answer) from a verified
 * identity. The values were computed once, when the identity was verified (the scopes
 * joined, the role interned): nothing is kept per cached identity for them.
 */
export function identityHeaders(out: HeaderSink, n: IdentityConfig['headers'], identity: Identity): void {
  put(out, n.subject, identity.subject);
  put(out, n.role, identity.role);
  put(out, n.scopes, identity.scopesHeader);
  put(out, n.method, identity.method);
  if (identity.keyId !== undefined) put(out, n.keyId, identity.keyId);
}
