import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import type { GatewayConfig } from '../config/load.js';
import { GatewayError, respondOnSocket } from '../http/problem.js';
import type { PipelineObserver, RequestRecord } from '../ops/record.js';
import type { Runtime } from '../runtime.js';
import { Proxy, closeUpstreams } from '../proxy/upstreams.js';
import type { RevocationCheck } from '../revocation/check.js';
import type { RateLimiter } from '../limits/types.js';
import { requestLogger, subjectHasher, type Logger } from '../ops/log.js';
import { serverContextOptions } from '../net/tls.js';
import { Pipeline, type EndpointHandler } from './handler.js';

/** What the gateway listener serves with besides its runtime; its owner opens and closes them. */
export interface ListenerOptions {
  readonly revocation: RevocationCheck;
  /** Counts requests against the routes' rate-limit policies (none: limits are not enforced). */
  readonly limiter?: RateLimiter | undefined;
  readonly logger: Logger;
  /** Extra observers of finished requests (metrics, tests). */
  readonly observers?: readonly PipelineObserver[];
  /** Override the listen port/host (tests use port 0). */
  readonly listen?: { host?: string; port?: number };
  /** `/.portcullis/<name>` endpoints besides `verify`, in place before the listener opens. */
  readonly endpoints?: Readonly<Record<string, EndpointHandler>>;
}

/**
 * The gateway listener: the main HTTP(S) server and its pipeline, on one runtime at a time.
 * Its owner builds the runtimes and swaps them in; the listener closes what runtimes hold.
 */
export class GatewayListener {
  /** An https.Server when `listen.tls` is set (it has every http.Server method the gateway uses). */
  readonly server: http.Server;
  readonly pipeline: Pipeline;
  readonly logger: Logger;
  private readonly proxy = new Proxy();
  private closing: Promise<void> | undefined;

  private constructor(rt: Runtime, opts: ListenerOptions) {
    const logger = opts.logger;
    this.logger = logger;
    const logLine = requestLogger(logger, subjectHasher(rt.config.log.pii, rt.config.log.salt));
    const all = [{ onRequest: logLine }, { onRequest: (r: RequestRecord) => r.trace?.end(r) }, ...(opts.observers ?? [])];
    const observer: PipelineObserver = all.length === 1 ? all[0]! : { onRequest: (r: RequestRecord) => { for (const o of all) o.onRequest(r); } };
    this.pipeline = new Pipeline(rt, opts.revocation, this.proxy, observer, opts.limiter, (obj, msg) => logger.warn(obj, msg));
    for (const [name, handler] of Object.entries(opts.endpoints ?? {})) this.pipeline.addEndpoint(name, handler);
    const l = rt.config.listen;
    const tls = rt.config.tlsFiles.listen;
    const options: http.ServerOptions = {
      headersTimeout: l.headersTimeout,
      requestTimeout: l.requestTimeout,
      // Node enforces both timeouts only when it sweeps its connections, every 30 s by
      // default: a 1 s headersTimeout would let a slow client hold on for 30 s. Sweep at a
      // quarter of the shorter timeout (at most every 250 ms, at least every 30 s).
      connectionsCheckingInterval: Math.min(30_000, Math.max(250, Math.floor(Math.min(l.headersTimeout || Infinity, l.requestTimeout || Infinity) / 4))),
      keepAliveTimeout: l.keepAliveTimeout,
      maxHeaderSize: l.maxHeaderSize,
      // Refuse requests that Node would otherwise tolerate (obs-fold, bare LF, …).
      insecureHTTPParser: false,
      // The ambiguity guard refuses a missing Host itself, as problem+json and closing the
      // connection; Node's own check would answer with a bare 400 of its own.
      requireHostHeader: false,
      joinDuplicateHeaders: false,
    };
    // HTTP/1.1 only, also to clients that offer h2: the pipeline's framing rules and the
    // proxy engine are HTTP/1.1's (docs/reference/operations.md, TLS).
    this.server = tls === undefined
      ? http.createServer(options)
      : (https.createServer({ ...options, ...serverContextOptions(tls), ALPNProtocols: ['http/1.1'] }) as unknown as http.Server);
    if (l.maxConnections > 0) this.server.maxConnections = l.maxConnections;
    this.server.on('request', this.pipeline.handle);
    this.server.on('upgrade', this.pipeline.upgrade);
    this.server.on('clientError', (_err, socket) => {
      // Unparseable requests (smuggling shapes, oversized heads, slow clients) never reach the pipeline.
      const answer = () => {
        if (!socket.writable) return socket.destroy();
        respondOnSocket(socket, new GatewayError('bad-request', 'The request could not be parsed as HTTP/1.1.'), randomUUID());
      };
      // Bytes that fail to parse can follow a request that is still being answered (pipelined
      // garbage, data after "Connection: close"): writing now would cut into or replace that
      // answer, so it goes out after it. When the bad bytes are in that request's own body,
      // it is the one refused (or, once its answer has started, the connection is dropped).
      const inflight = (socket as { _httpMessage?: http.ServerResponse | null })._httpMessage;
      if (!inflight || inflight.writableFinished) answer();
      else if (inflight.req.complete) inflight.once('close', answer);
      else if (!inflight.headersSent) answer();
      else socket.destroy();
    });
  }

  /** Opens the listener on `rt` (its config's listen address unless `opts.listen` overrides it). */
  static async start(rt: Runtime, opts: ListenerOptions): Promise<GatewayListener> {
    const gw = new GatewayListener(rt, opts);
    const host = opts.listen?.host ?? rt.config.listen.host;
    const port = opts.listen?.port ?? rt.config.listen.port;
    await new Promise<void>((resolve, reject) => {
      gw.server.once('error', reject);
      gw.server.listen(port, host, () => {
        gw.server.off('error', reject);
        resolve();
      });
    });
    opts.logger.info({ address: gw.address() }, 'portcullis listening');
    return gw;
  }

  get config(): GatewayConfig {
    return this.pipeline.current.config;
  }

  address(): { host: string; port: number } {
    const a = this.server.address() as AddressInfo;
    return { host: a.address, port: a.port };
  }

  url(): string {
    const { host, port } = this.address();
    return `${this.server instanceof https.Server ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}`;
  }

  /**
   * Swaps `rt` in (in-flight requests finish on the old one) and applies its certificate
   * files. The old runtime's upstream agents close once idle, its tracer (when `rt` has
   * another) once it sent what it holds. Returns the runtime replaced.
   */
  swap(rt: Runtime): Runtime {
    this.reloadTls(rt.config);
    const old = this.pipeline.swap(rt);
    setTimeout(() => {
      closeUpstreams(old.upstreams as never);
      if (old.tracing !== rt.tracing) void old.tracing.shutdown(5_000);
    }, 60_000).unref();
    return old;
  }

  /**
   * New certificate files for new handshakes; connections already open keep theirs. Turning
   * TLS on or off needs a restart (the listener's kind is fixed when it is created).
   */
  private reloadTls(config: GatewayConfig): void {
    const tls = config.tlsFiles.listen;
    const isTls = this.server instanceof https.Server;
    if (tls === undefined || !isTls) {
      if ((tls !== undefined) !== isTls) this.logger.warn({ file: config.file }, 'listen.tls changed between on and off: this takes a restart; the listener keeps its current protocol');
      return;
    }
    const s = this.server as unknown as https.Server & { requestCert: boolean; rejectUnauthorized: boolean };
    const o = serverContextOptions(tls);
    s.setSecureContext(o);
    // Read per handshake by Node, but set by setSecureContext only for the context itself.
    s.requestCert = o.requestCert;
    s.rejectUnauthorized = o.rejectUnauthorized;
  }

  /** Stops accepting, drains in-flight requests up to `drainMs`, then closes the runtime's upstreams and tracer. */
  close(drainMs = this.config.shutdown.drainTimeout): Promise<void> {
    this.closing ??= (async () => {
      const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
      this.server.closeIdleConnections();
      const timer = setTimeout(() => this.server.closeAllConnections(), drainMs);
      await closed;
      clearTimeout(timer);
      this.proxy.close();
      closeUpstreams(this.pipeline.current.upstreams as never);
      await this.pipeline.current.tracing.shutdown(Math.min(drainMs, 5_000));
    })();
    return this.closing;
  }
}
