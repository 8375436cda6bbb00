import http from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import { ProxyServer } from 'http-proxy-3';
import { Pool, buildConnector } from 'undici';
import { dispatchTo } from './dispatch.js';
import { GatewayError } from '../http/problem.js';
import type { UpstreamConfig } from '../config/schema.js';
import { plainUpstreamTls, type UpstreamTls } from '../net/tls.js';

/** One upstream: its target URL, a keep-alive agent and its timeout. */
export interface Upstream {
  readonly name: string;
  readonly target: URL;
  readonly agent: http.Agent;
  /**
   * Agent for websocket handshakes: an upgraded socket never returns to a pool, so it must
   * not count against the keep-alive agent's `maxSockets`. `false` (a fresh connection
   * each time) for http upstreams; for https ones an agent without keep-alive that carries
   * the TLS settings.
   */
  readonly wsAgent: http.Agent | false;
  readonly timeout: number;
  /** undici's connection pool, when the upstream's `engine` is `undici` (else http-proxy-3 and `agent`). */
  readonly pool: Pool | undefined;
  /**
   * For undici and an https upstream: the name every request states as its TLS server name
   * (undici would take it from each request's Host header, and reconnect when it changes).
   * The connection itself uses the configured one (none for an IP literal).
   */
  readonly sni: string | undefined;
}

function tlsOptions(t: UpstreamTls): https.AgentOptions {
  return {
    servername: t.servername,
    ...(t.ca === undefined ? {} : { ca: t.ca }),
    ...(t.cert === undefined ? {} : { cert: t.cert }),
    ...(t.key === undefined ? {} : { key: t.key }),
  };
}

export function createUpstreams(configs: Readonly<Record<string, UpstreamConfig>>, tls: Readonly<Record<string, UpstreamTls>> = {}): Map<string, Upstream> {
  const out = new Map<string, Upstream>();
  for (const [name, c] of Object.entries(configs)) {
    const target = new URL(c.url);
    const pool = { keepAlive: true, maxSockets: c.maxSockets, maxFreeSockets: Math.min(c.maxSockets, 64), scheduling: 'lifo' as const, timeout: c.connectTimeout };
    const t = target.protocol === 'https:' ? (tls[name] ?? plainUpstreamTls(target)) : undefined;
    const agent = t === undefined ? new http.Agent(pool) : new https.Agent({ ...pool, ...tlsOptions(t) });
    const wsAgent = t === undefined ? false : new https.Agent({ keepAlive: false, ...tlsOptions(t) });
    const dispatcher = c.engine === 'undici' ? undiciPool(target, c, t) : undefined;
    out.set(name, { name, target, agent, wsAgent, timeout: c.timeout, pool: dispatcher, sni: t === undefined ? undefined : t.servername || target.hostname });
  }
  return out;
}

/**
 * One pool per upstream: at most `maxSockets` connections, one request at a time on each
 * (no pipelining), kept alive as the upstream's `Keep-Alive: timeout` hint allows.
 */
function undiciPool(target: URL, c: UpstreamConfig, t: UpstreamTls | undefined): Pool {
  const tlsOpts = t === undefined ? {} : { ...tlsOptions(t), servername: t.servername || undefined };
  const connector = buildConnector({ timeout: c.connectTimeout, ...tlsOpts });
  return new Pool(target.origin, {
    connections: c.maxSockets,
    pipelining: 1,
    headersTimeout: c.timeout,
    bodyTimeout: c.timeout,
    // The TLS name is the configured one, never one a request's Host header suggests.
    connect: (opts, callback) => connector({ ...opts, servername: undefined } as never, callback),
  });
}

export function closeUpstreams(upstreams: Map<string, Upstream>): void {
  for (const u of upstreams.values()) {
    u.agent.destroy();
    void u.pool?.destroy().catch(() => {});
    if (u.wsAgent) u.wsAgent.destroy();
  }
}

/** Response headers that describe the upstream's connection (and its framing): never forwarded. */
const RESPONSE_HOP_BY_HOP: ReadonlySet<string> = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'proxy-authenticate']);

/**
 * The headers the client gets with a proxied response: the upstream's, without its
 * hop-by-hop headers and those its Connection header names, with our own Connection (per
 * the client's connection) and request id. Built as a new object: the upstream response's
 * own headers stay as they came, since the agent reads its Keep-Alive hint from them
 * when it pools the socket.
 */
export function clientResponseHeaders(upstream: http.IncomingHttpHeaders, keepAlive: boolean, requestId: string | undefined): http.OutgoingHttpHeaders {
  const named = upstream['connection'];
  const listed = named ? named.toLowerCase().split(',').map((n) => n.trim()) : undefined;
  const out: http.OutgoingHttpHeaders = {};
  for (const name in upstream) {
    if (RESPONSE_HOP_BY_HOP.has(name) || listed?.includes(name)) continue;
    out[name] = upstream[name];
  }
  out['connection'] = keepAlive ? 'keep-alive' : 'close';
  if (requestId !== undefined) out['x-request-id'] = requestId;
  return out;
}

const TIMED_OUT = Symbol('portcullis.timedOut');
const WS_TIMEOUT = Symbol('portcullis.wsTimeout');
type Marked = http.IncomingMessage & { [TIMED_OUT]?: boolean; [WS_TIMEOUT]?: number };

/**
 * Drops http-proxy-3's `deleteLength` pass, which gives a DELETE or OPTIONS without
 * `Content-Length` a `Content-Length: 0` and deletes its `Transfer-Encoding` — and then
 * pipes the chunked body anyway, raw, where the upstream reads it as the next request.
 * The gateway states every request's framing itself (identity/headers). Fails at start if
 * the library no longer has the pass, so a changed dependency cannot go unnoticed.
 */
function withoutDeleteLength(server: ProxyServer): void {
  const passes = (server as unknown as { webPasses?: Array<{ name: string }> }).webPasses;
  const i = passes?.findIndex((p) => p.name === 'deleteLength') ?? -1;
  if (passes === undefined || i === -1) throw new Error('http-proxy-3 changed: its deleteLength pass was not found');
  passes.splice(i, 1);
}

/**
 * Destroys the upstream request when the client's connection closes before its body has
 * all arrived. http-proxy-3 does so only while the response is still being written: once
 * the upstream has answered early (a 404 or 413 before reading the body) and the answer has
 * gone out, Node neither ends nor fails the half-received request body, so the upstream
 * request — and its pooled socket — would wait for the rest forever. A few abandoned
 * uploads would then hold every socket of the pool, and every later request would wait.
 */
function abandonWithClient(proxyReq: http.ClientRequest, req: http.IncomingMessage): void {
  const client = req.socket;
  const abandon = () => {
    if (!req.complete) proxyReq.destroy();
  };
  if (client.destroyed) {
    abandon();
    return;
  }
  client.once('close', abandon);
  proxyReq.once('close', () => client.off('close', abandon));
}

/** Maps a proxying failure to the problem the client gets. */
export function upstreamError(err: unknown, req: http.IncomingMessage, upstream: Upstream, startedAt: number): GatewayError {
  const timedOut = (req as Marked)[TIMED_OUT] === true || performance.now() - startedAt >= upstream.timeout;
  if (timedOut) return new GatewayError('upstream-timeout', `Upstream "${upstream.name}" did not answer within ${upstream.timeout} ms.`, { cause: err });
  return new GatewayError('upstream-unavailable', `Upstream "${upstream.name}" could not be reached.`, { cause: err });
}

/**
 * The proxy: requests go through undici (`dispatch.ts`) for upstreams whose `engine` is
 * `undici`, else through http-proxy-3's native http path with keep-alive agents; websocket
 * handshakes always take http-proxy-3. Bodies are piped both ways, never buffered; a
 * client abort ends the upstream request.
 */
export class Proxy {
  private readonly server: ProxyServer;

  constructor() {
    // The response is written here (selfHandleResponse): one pass over the upstream's headers
    // instead of deleting from them and copying them header by header.
    this.server = new ProxyServer({ xfwd: false, ws: true, changeOrigin: false, preserveHeaderKeyCase: false, selfHandleResponse: true });
    withoutDeleteLength(this.server);
    // Marks requests whose upstream went idle past the timeout, so the error is a 504 not a 502.
    this.server.on('proxyReq', (proxyReq, req) => {
      proxyReq.once('timeout', () => { (req as Marked)[TIMED_OUT] = true; });
      abandonWithClient(proxyReq, req);
    });
    // A websocket handshake gets the upstream's timeout too (http-proxy-3 sets none on it);
    // once upgraded, the tunnel is idle as long as its two ends like.
    this.server.on('proxyReqWs', (proxyReq, req) => {
      const ms = (req as Marked)[WS_TIMEOUT];
      if (ms === undefined) return;
      proxyReq.setTimeout(ms, () => {
        (req as Marked)[TIMED_OUT] = true;
        proxyReq.destroy(new Error('websocket handshake timed out'));
      });
      const clear = () => proxyReq.setTimeout(0);
      proxyReq.once('upgrade', (_res, socket) => {
        clear();
        socket.setTimeout(0);
      });
      proxyReq.once('response', clear);
    });
    // The upstream's connection management is its own: drop its hop-by-hop headers and
    // answer the client according to the client's connection, not the upstream's.
    this.server.on('proxyRes', (proxyRes, req, res) => {
      const out = res as http.ServerResponse & { shouldKeepAlive: boolean };
      if (!out.headersSent) {
        const requestId = req.headers['x-request-id'];
        // HTTP/1.0 clients get "close": their response cannot be chunked, so its end is the
        // end of the connection.
        const keepAlive = req.httpVersion !== '1.0' && out.shouldKeepAlive;
        const headers = clientResponseHeaders(proxyRes.headers, keepAlive, typeof requestId === 'string' ? requestId : undefined);
        if (proxyRes.statusMessage) out.writeHead(proxyRes.statusCode!, proxyRes.statusMessage, headers);
        else out.writeHead(proxyRes.statusCode!, headers);
      }
      // An upstream that dies mid-body (or goes idle past its timeout) must not leave the
      // client waiting for the rest: cut the client's response too.
      proxyRes.once('close', () => {
        if (!proxyRes.complete && !res.writableEnded) res.destroy();
      });
      if (out.writableEnded) proxyRes.resume();
      else proxyRes.pipe(out);
    });
    // Errors are always handled by the per-call callback; this keeps a stray one from crashing.
    this.server.on('error', () => {});
  }

  web(req: http.IncomingMessage, res: http.ServerResponse, upstream: Upstream, onError: (err: Error) => void): void {
    if (upstream.pool !== undefined) {
      dispatchTo(upstream.pool, req, res, upstream, (err, timedOut) => {
        if (timedOut) (req as Marked)[TIMED_OUT] = true;
        onError(err);
      });
      return;
    }
    this.server.web(req, res, { target: upstream.target, agent: upstream.agent, proxyTimeout: upstream.timeout }, onError as never);
  }

  ws(req: http.IncomingMessage, socket: Duplex, head: Buffer, upstream: Upstream, onError: (err: Error) => void): void {
    (req as Marked)[WS_TIMEOUT] = upstream.timeout;
    this.server.ws(req, socket, head, { target: upstream.target, agent: upstream.wsAgent as never, proxyTimeout: upstream.timeout }, onError as never);
  }

  close(): void {
    this.server.close();
  }
}
