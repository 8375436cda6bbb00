import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { LoadResult, GatewayConfig } from './config/load.js';
import { randomUUID } from 'node:crypto';
import { GatewayError, respondOnSocket } from './http/problem.js';
import { Pipeline, type EndpointHandler } from './pipeline/handler.js';
import type { PipelineObserver, RequestRecord } from './ops/record.js';
import { buildRuntime, type Authenticators, type Runtime } from './pipeline/runtime.js';
import { Proxy, closeUpstreams } from './proxy/upstreams.js';
import type { RevocationCheck } from './revocation/check.js';
import type { RateLimiter } from './limits/types.js';
import { createLogger, requestLogger, subjectHasher, type Logger } from './ops/log.js';
import { openTracing } from './ops/tracing.js';
import { serverContextOptions } from './net/tls.js';
import { restartOnlyChanges, sectionsChanged } from './runtime.js';
import { AdminServer, bearerMatches } from './ops/admin.js';
import { adminRoutes, adminTokenFile, writeAdminToken } from './ops/admin-api.js';
import { Metrics } from './ops/metrics.js';
import { logoutEndpoint, refreshEndpoint } from './pipeline/endpoints.js';
import { openServices, type CoreOptions, type GatewayServices } from './services.js';

/** What the gateway runs on besides its config; built by `openServices`, closed with the gateway. */
export interface Services {
  authenticators(config: GatewayConfig): Authenticators | Promise<Authenticators>;
  readonly revocation: RevocationCheck;
  /** Counts requests against the routes' rate-limit policies (none: limits are not enforced). */
  readonly limiter?: RateLimiter | undefined;
  /** Called after a reload swapped the runtime, with the one it replaced. */
  retire?(old: Runtime): void;
  close(): Promise<void>;
}

export interface GatewayOptions {
  services: Services;
  logger?: Logger;
  /** Extra observers of finished requests (metrics, tests). */
  observers?: PipelineObserver[];
  /** Override the listen port/host (tests use port 0). */
  listen?: { host?: string; port?: number };
  /** `/.portcullis/<name>` endpoints besides `verify`, in place before the listener opens. */
  endpoints?: Readonly<Record<string, EndpointHandler>>;
}

/** A running gateway: the main listener and its pipeline. */
export class Gateway {
  /** An https.Server when `listen.tls` is set (it has every http.Server method the gateway uses). */
  readonly server: http.Server;
  readonly pipeline: Pipeline;
  readonly logger: Logger;
  private readonly proxy = new Proxy();
  private closing: Promise<void> | undefined;

  private constructor(rt: Runtime, private readonly services: Services, logger: Logger, observers: PipelineObserver[], endpoints: Readonly<Record<string, EndpointHandler>>) {
    this.logger = logger;
    const logLine = requestLogger(logger, subjectHasher(rt.config.log.pii, rt.config.log.salt));
    const all = [{ onRequest: logLine }, { onRequest: (r: RequestRecord) => r.trace?.end(r) }, ...observers];
    const observer: PipelineObserver = all.length === 1 ? all[0]! : { onRequest: (r: RequestRecord) => { for (const o of all) o.onRequest(r); } };
    this.pipeline = new Pipeline(rt, services.revocation, this.proxy, observer, services.limiter);
    for (const [name, handler] of Object.entries(endpoints)) this.pipeline.addEndpoint(name, handler);
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

  static async start(loaded: LoadResult, opts: GatewayOptions): Promise<Gateway> {
    const config = loaded.config;
    const logger = opts.logger ?? createLogger(config.log);
    for (const w of loaded.warnings) logger.warn(w);
    const rt = buildRuntime(config, await opts.services.authenticators(config), undefined, await openTracing(config.tracing));
    const gw = new Gateway(rt, opts.services, logger, opts.observers ?? [], opts.endpoints ?? {});
    const host = opts.listen?.host ?? config.listen.host;
    const port = opts.listen?.port ?? config.listen.port;
    await new Promise<void>((resolve, reject) => {
      gw.server.once('error', reject);
      gw.server.listen(port, host, () => {
        gw.server.off('error', reject);
        resolve();
      });
    });
    logger.info({ address: gw.address() }, 'portcullis listening');
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

  /** Builds a runtime from a new config and swaps it in; in-flight requests finish on the old one. */
  async reload(loaded: LoadResult): Promise<void> {
    const before = this.pipeline.current.config;
    const prev = this.pipeline.current.tracing;
    const same = !sectionsChanged(before, loaded.config, ['tracing']);
    const tracing = same ? prev : await openTracing(loaded.config.tracing);
    const rt = buildRuntime(loaded.config, await this.services.authenticators(loaded.config), undefined, tracing);
    this.reloadTls(loaded.config);
    const old = this.pipeline.swap(rt);
    for (const w of loaded.warnings) this.logger.warn(w);
    const restart = restartOnlyChanges(before, loaded.config);
    if (restart.length > 0) this.logger.warn({ file: loaded.config.file, changed: restart }, `config changes that take a restart: ${restart.join(', ')}; they are not applied until then`);
    this.services.retire?.(old);
    // Old upstream agents close once their sockets are idle; the old tracer sends what it holds.
    setTimeout(() => {
      closeUpstreams(old.upstreams as never);
      if (!same) void prev.shutdown(5_000);
    }, 60_000).unref();
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

  /** Stops accepting, drains in-flight requests up to `drainMs`, then closes everything. */
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
      await this.services.close();
    })();
    return this.closing;
  }
}

export interface PortcullisOptions extends CoreOptions {
  logger: Logger;
  observers?: PipelineObserver[];
  /** Override listen addresses (tests use port 0). */
  listen?: { host?: string; port?: number };
  admin?: { host?: string; port?: number };
}

/** A whole running Portcullis: gateway, admin listener, and the services under them. */
export interface Portcullis {
  readonly gateway: Gateway;
  readonly admin: AdminServer;
  readonly services: GatewayServices;
  readonly adminAddress: { host: string; port: number };
  readonly adminToken: string;
  readonly metrics: Metrics;
  reload(next: LoadResult): Promise<void>;
  close(drainMs?: number): Promise<void>;
}

/** Opens the services, starts the gateway and the admin listener (what `serve` runs). */
export async function startPortcullis(loaded: LoadResult, opts: PortcullisOptions): Promise<Portcullis> {
  const { logger } = opts;
  const config = loaded.config;
  const metrics = new Metrics();
  const services = await openServices(config, logger, {
    ...opts,
    onRevocationFailure: () => metrics.revocationError(),
    observeRevocation: (ms) => metrics.observeRevocation(ms),
  });
  metrics.setCacheSource('jwt', () => services.current().jwt?.stats);
  metrics.setCacheSource('apiKey', () => services.current().apiKey?.stats);
  metrics.setQueueDepthSource(() => services.current().apiKey?.verificationLoad.queued ?? 0);
  try {
    // Admin token: from config; else, for the embedded store's file, a fresh one written
    // beside it (0600) for local tools; else the admin API stays closed.
    let adminToken = config.admin.token;
    const tokenFile = adminTokenFile(config.store.url, opts.baseDir);
    if (adminToken === '' && tokenFile !== undefined) adminToken = await writeAdminToken(tokenFile);

    const gateway = await Gateway.start(loaded, {
      services,
      logger,
      observers: [metrics, ...(opts.observers ?? [])],
      ...(opts.listen ? { listen: opts.listen } : {}),
      endpoints: {
        refresh: refreshEndpoint(services.core.keys),
        logout: logoutEndpoint(services.core.keys, services.core.tokens, services.revocation),
      },
    });

    const admin = new AdminServer({
      host: opts.admin?.host ?? config.admin.host,
      port: opts.admin?.port ?? config.admin.port,
      checks: services.checks,
      allowedHosts: config.admin.allowedHosts,
      metrics,
      jwks: () => services.current().assertion?.jwks() ?? { keys: [] },
      authorize: adminAuthorizer(adminToken, gateway, services),
      routes: adminRoutes(services.core),
    });
    let adminAddress: { host: string; port: number };
    try {
      adminAddress = await admin.listen();
    } catch (err) {
      await gateway.close(0);
      throw err;
    }
    logger.info({ address: adminAddress }, 'admin listening');

    return {
      gateway, admin, services, adminAddress, adminToken, metrics,
      reload: (next) => gateway.reload(next),
      close: async (drainMs) => {
        await admin.close();
        await gateway.close(drainMs);
      },
    };
  } catch (err) {
    await services.close().catch(() => undefined);
    throw err;
  }
}

/** The admin API's check: the admin token, or (with `admin.acceptJwt`) a JWT of the highest role. */
function adminAuthorizer(adminToken: string, gateway: Gateway, services: GatewayServices): (authorization: string | undefined) => Promise<boolean> {
  return async (authorization) => {
    if (bearerMatches(authorization, adminToken)) return true;
    const cfg = gateway.config;
    if (!cfg.admin.acceptJwt || !authorization) return false;
    const jwt = services.current().jwt;
    const m = /^Bearer\s+(\S+)$/i.exec(authorization);
    if (!jwt || !m) return false;
    try {
      const id = await jwt.authenticate({ kind: 'jwt', value: m[1]!, source: 'authorization' });
      return id.roleRank === cfg.roles.length - 1 && !(await services.revocation.isRevoked(id));
    } catch {
      return false;
    }
  };
}
