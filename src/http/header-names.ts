/**
 * The request headers the gateway reads, removes or states itself on the way upstream, by
 * kind (identity/headers.ts applies them; http/guard.ts refuses their `_` spellings). All
 * lowercase. The identity and credential headers depend on the config and are in
 * identity/namespace.ts.
 */

/**
 * Headers that describe one connection, never forwarded (RFC 9110 §7.6.1). `Expect` is
 * answered by the gateway itself (Node sends `100 Continue` before the request is handed
 * over), so the body comes anyway and the upstream sees an ordinary, framed request.
 * `Transfer-Encoding` is hop-by-hop too, but the framing it carries is re-stated upstream
 * (identity/headers.ts, `upstreamHeaders`).
 */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade',
  'proxy-authorization', 'proxy-authenticate', 'http2-settings', 'expect',
]);

/**
 * Headers through which a client could claim an address, a scheme, a host, or a different
 * URL (besides every `X-Forwarded-*`). Replaced unless the peer is a trusted proxy.
 */
export const FORWARDING: ReadonlySet<string> = new Set([
  'forwarded', 'x-real-ip',
  'x-original-uri', 'x-original-method', 'x-original-host',
]);

/**
 * Headers through which some servers take the client address, the host, the path or the
 * method, which the gateway decides and states itself (X-Forwarded-For/-Host, the normalized
 * path and the method on the request line). Removed whoever sent them: a second opinion on
 * these is a split view. No proxy adds a method override, so one that comes through a
 * trusted proxy is still the client's, and would have the upstream run a method the route
 * was not chosen for.
 */
export const NEVER_FORWARDED: ReadonlySet<string> = new Set([
  'x-forwarded-path', 'x-original-path', 'x-envoy-original-path', 'x-original-url', 'x-rewrite-url', 'x-host',
  'client-ip', 'true-client-ip', 'cf-connecting-ip', 'x-client-ip', 'x-cluster-client-ip',
  'x-http-method-override', 'x-http-method', 'x-method-override',
]);

/** Headers the forwarding step states itself, after the pass over the inbound ones. */
export const STATED: ReadonlySet<string> = new Set(['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-request-id', 'traceparent', 'tracestate']);

/**
 * Headers in which TLS terminators state a client certificate and its verification
 * (nginx's `X-SSL-Client-*`, Apache's `SSL_CLIENT_*` as `SSL-Client-*`, IIS/ARR's
 * `X-ARR-ClientCert`, AWS's `X-Amzn-Mtls-Clientcert*`, RFC 9440's `Client-Cert` and
 * `Client-Cert-Chain`, Envoy's `X-Forwarded-Client-Cert`, Traefik's
 * `X-Forwarded-Tls-Client-Cert(-Info)`, Cloudflare's `Cf-Client-Cert-*`). An upstream
 * may admit on them; a client must not be able to state them.
 */
const CLIENT_CERT: ReadonlySet<string> = new Set(['x-forwarded-client-cert', 'client-cert', 'client-cert-chain', 'x-arr-clientcert', 'x-client-verify', 'x-client-dn', 'x-client-s-dn', 'x-client-i-dn']);
const CLIENT_CERT_PREFIXES = ['x-ssl-', 'ssl-client-', 'x-client-cert', 'x-amzn-mtls-', 'x-forwarded-tls-client-cert', 'cf-client-cert'] as const;

/** True for a header stating a client certificate (see {@link CLIENT_CERT}). */
export function isClientCertificate(name: string): boolean {
  // Every one begins with x, s or c: most headers are passed over on their first letter.
  const first = name.charCodeAt(0);
  if (first !== 0x78 && first !== 0x73 && first !== 0x63) return false;
  if (CLIENT_CERT.has(name)) return true;
  for (const p of CLIENT_CERT_PREFIXES) if (name.startsWith(p)) return true;
  return false;
}

/**
 * True for a header a client may only send through a trusted proxy: forwarding headers,
 * and the client-certificate ones (which a trusted proxy that terminated TLS states; on a
 * connection the gateway terminated itself they are removed whoever sent them).
 */
export function isForwarding(name: string): boolean {
  return name.startsWith('x-forwarded-') || FORWARDING.has(name) || isClientCertificate(name);
}

/**
 * True for a lowercase name the gateway frames the request by, removes, or states itself
 * (besides the identity and credential headers). Servers behind CGI-style header mapping
 * (WSGI, Rack, PHP, CGI) read `X_Forwarded_For` as `X-Forwarded-For`, so a `_` spelling of
 * one of these would reach them unremoved and be taken as the gateway's.
 */
export function isManagedName(name: string): boolean {
  return HOP_BY_HOP.has(name) || isForwarding(name) || NEVER_FORWARDED.has(name) || STATED.has(name) || name === 'content-length' || name === 'host';
}
