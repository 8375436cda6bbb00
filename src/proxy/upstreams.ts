import type http from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import { ProxyServer } from 'http-proxy-3';
import { Pool, buildConnector } from 'undici';
import { dispatchTo } from './dispatch.js';
import { GatewayError } from '../http/problem.js';
import type { UpstreamConfig } from '../config/schema.js';
import { plainUpstreamTls, type UpstreamTls } from '../net/tls.js';

/** One upstream: its target URL, its connection pool and its timeout. */
export interface Upstream {
  readonly name: string;
  readonly target: URL;
  /** undici's connection pool: every request but a websocket handshake goes through it. */
  readonly pool: Pool;
  /**
   * Agent for websocket handshakes (http-proxy-3): an upgraded socket never returns to a
   * pool, so it must not count against the pool's connections. `false` (a fresh
   * connection each time) for http upstreams; for https ones an agent without keep-alive
   * that carries the TLS settings.
   */
  readonly wsAgent: http.Agent | false;
  readonly timeout: number;
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
    const t = target.protocol === 'https:' ? (tls[name] ?? plainUpstreamTls(target)) : undefined;
    const wsAgent = t === undefined ? false : new https.Agent({ keepAlive: false, ...tlsOptions(t) });
    out.set(name, { name, target, pool: undiciPool(target, c, t), wsAgent, timeout: c.timeout, sni: t === undefined ? undefined : t.servername || target.hostname });
  }
  return out;
}

/**
 * One pool per upstream: at most `maxSockets` connections, one request at a time on each
 * (no pipelining), kept alive as the upstream's `Keep-Alive: timeout` hint allows less a
 * second, so a connection is not reused just as the upstream closes it.
 */
function undiciPool(target: URL, c: UpstreamConfig, t: UpstreamTls | undefined): Pool {
  const tlsOpts = t === undefined ? {} : { ...tlsOptions(t), servername: t.servername || undefined };
  const connector = buildConnector({ timeout: c.connectTimeout, ...tlsOpts });
  return new Pool(target.origin, {
    connections: c.maxSockets,
    pipelining: 1,
    keepAliveTimeoutThreshold: 1_000,
    // The upstream timeout is the exchange's own idle timer (dispatch.ts).
    headersTimeout: 0,
    bodyTimeout: 0,
    // The TLS name is the configured one, never one a request's Host header suggests.
    connect: (opts, callback) => connector({ ...opts, servername: undefined } as never, callback),
  });
}

export function closeUpstreams(upstreams: Map<string, Upstream>): void {
  for (const u of upstreams.values()) {
    void u.pool.destroy().catch(() => {});
    if (u.wsAgent) u.wsAgent.destroy();
  }
}

const TIMED_OUT = Symbol('portcullis.timedOut');
const WS_TIMEOUT = Symbol('portcullis.wsTimeout');
type Marked = http.IncomingMessage & { [TIMED_OUT]?: boolean; [WS_TIMEOUT]?: number };

/** Maps a proxying failure to the problem the client gets. */
export function upstreamError(err: unknown, req: http.IncomingMessage, upstream: Upstream, startedAt: number): GatewayError {
  const timedOut = (req as Marked)[TIMED_OUT] === true || performance.now() - startedAt >= upstream.timeout;
  if (timedOut) return new GatewayError('upstream-timeout', `Upstream "${upstream.name}" did not answer within ${upstream.timeout} ms.`, { cause: err });
  return new GatewayError('upstream-unavailable', `Upstream "${upstream.name}" could not be reached.`, { cause: err });
}

/**
 * The proxy: requests go through undici's dispatcher (`dispatch.ts`), a pool per upstream;
 * websocket handshakes take http-proxy-3, whose tunnel pipes the two sockets once upgraded.
 */
export class Proxy {
  private readonly server: ProxyServer;

  constructor() {
    this.server = new ProxyServer({ xfwd: false, ws: true, changeOrigin: false, preserveHeaderKeyCase: false });
    // A websocket handshake gets the upstream's timeout (http-proxy-3 sets none on it);
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
    // Errors are always handled by the per-call callback; this keeps a stray one from crashing.
    this.server.on('error', () => {});
  }

  /** Proxies `req` with `headers` (the upstream's, a flat list: identity/headers) and answers on `res`. */
  /** `answerHeaders`: headers of ours for the client's answer (RateLimit), unless the upstream sends the same names. */
  web(req: http.IncomingMessage, res: http.ServerResponse, upstream: Upstream, headers: string[], requestId: string, onError: (err: Error) => void, answerHeaders?: Record<string, string>): void {
    dispatchTo(upstream.pool, req, res, { headers, requestId, timeout: upstream.timeout, sni: upstream.sni, answerHeaders }, (err, timedOut) => {
      if (timedOut) (req as Marked)[TIMED_OUT] = true;
      onError(err);
    });
  }

  ws(req: http.IncomingMessage, socket: Duplex, head: Buffer, upstream: Upstream, onError: (err: Error) => void): void {
    (req as Marked)[WS_TIMEOUT] = upstream.timeout;
    this.server.ws(req, socket, head, { target: upstream.target, agent: upstream.wsAgent as never, proxyTimeout: upstream.timeout }, onError as never);
  }

  close(): void {
    this.server.close();
  }
}
