import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import type { Identity } from '../authn/types.js';
import type { IdentityConfig } from '../config/schema.js';
import type { TraceHeaders } from '../ops/tracing.js';

/** Headers that describe one connection, never forwarded (RFC 9110 §7.6.1). */
const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade',
  'proxy-authorization', 'proxy-authenticate', 'http2-settings',
]);

/**
 * Headers through which a client could claim an address, a scheme, a host or a
 * different URL or method. Replaced unless the peer is a trusted proxy.
 */
const FORWARDING = new Set([
  'forwarded', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port',
  'x-forwarded-prefix', 'x-forwarded-uri', 'x-forwarded-method', 'x-forwarded-server', 'x-forwarded-ssl', 'x-forwarded-scheme',
  'x-real-ip', 'x-client-ip', 'true-client-ip', 'x-cluster-client-ip',
  'x-original-url', 'x-rewrite-url', 'x-original-uri', 'x-original-method', 'x-original-host',
  'x-http-method-override', 'x-http-method', 'x-method-override',
]);

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
  const owned = new Set<string>(Object.values(identity.headers));
  if (identity.assertion) owned.add(identity.assertion.header);
  return {
    names: identity.headers,
    owned,
    prefixes: identity.namespace,
    credentialHeaders: new Set(['authorization', ...keyHeaders.map((h) => h.toLowerCase())]),
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
  /** Remove the Authorization header: it carried the credential. */
  readonly dropAuthorization: boolean;
  /** The gateway's Trace Context for the upstream; the client's never passes on unchanged. */
  readonly trace?: TraceHeaders | undefined;
}

/**
 * The headers the upstream receives: everything in our namespace, hop-by-hop and
 * (from untrusted peers) forwarding headers removed first, then the verified identity
 * and the forwarding headers set — in one step, so nothing a client sent can survive
 * under a name we set.
 */
export function upstreamHeaders(
  inbound: IncomingHttpHeaders,
  plan: ForwardPlan,
  identity: Identity | null,
  ctx: ForwardContext,
): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  const connection = inbound['connection'];
  const named = connection ? connection.toLowerCase().split(',').map((s) => s.trim()) : null;
  for (const name in inbound) {
    if (isOwnedHeader(plan, name)) continue;
    if (HOP_BY_HOP.has(name)) {
      if (ctx.upgrade && name === 'upgrade') out[name] = inbound[name];
      continue;
    }
    if (named !== null && named.includes(name)) continue;
    if (name === 'traceparent' || name === 'tracestate') continue;
    if (!ctx.peerTrusted && FORWARDING.has(name)) continue;
    if (!plan.forwardCredential && plan.credentialHeaders.has(name) && (name !== 'authorization' || ctx.dropAuthorization)) continue;
    out[name] = inbound[name];
  }
  if (ctx.upgrade) out['connection'] = 'upgrade';

  const xff = ctx.peerTrusted ? inbound['x-forwarded-for'] : undefined;
  out['x-forwarded-for'] = xff ? `${xff}, ${ctx.peerIp}` : ctx.peerIp;
  if (!ctx.peerTrusted || !out['x-forwarded-proto']) out['x-forwarded-proto'] = ctx.proto;
  if (!ctx.peerTrusted || !out['x-forwarded-host']) {
    if (inbound.host !== undefined) out['x-forwarded-host'] = inbound.host;
  }
  out['x-request-id'] = ctx.requestId;
  if (ctx.trace !== undefined) {
    out['traceparent'] = ctx.trace.traceparent;
    if (ctx.trace.tracestate !== undefined) out['tracestate'] = ctx.trace.tracestate;
  }

  if (identity !== null) {
    const n = plan.names;
    out[n.subject] = identity.subject;
    out[n.role] = identity.role;
    out[n.scopes] = identity.scopesHeader;
    out[n.method] = identity.method;
    if (identity.keyId !== undefined) out[n.keyId] = identity.keyId;
  }
  return out;
}
