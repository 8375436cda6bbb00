import type { LoadResult } from './config/load.js';
import { Gateway } from './gateway.js';
import { AdminServer, bearerMatches } from './ops/admin.js';
import { adminRoutes, adminTokenFile, writeAdminToken } from './ops/admin-api.js';
import type { Logger } from './ops/log.js';
import { Metrics } from './ops/metrics.js';
import { logoutEndpoint, refreshEndpoint } from './pipeline/endpoints.js';
import type { PipelineObserver } from './ops/request-record.js';
import { openServices, type CoreOptions, type GatewayServices } from './services.js';

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
    });
    const core = services.core;
    gateway.pipeline.addEndpoint('refresh', refreshEndpoint(core.keys));
    gateway.pipeline.addEndpoint('logout', logoutEndpoint(core.keys, core.tokens, services.revocation));

    const admin = new AdminServer({
      host: opts.admin?.host ?? config.admin.host,
      port: opts.admin?.port ?? config.admin.port,
      checks: services.checks,
      allowedHosts: config.admin.allowedHosts,
      metrics,
      jwks: () => services.current().assertion?.jwks() ?? { keys: [] },
      authorize: async (authorization) => {
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
      },
      routes: adminRoutes(core),
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
