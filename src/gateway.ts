import type { LoadResult, GatewayConfig } from './config/load.js';
import { systemClock, type Clock } from './clock.js';
import type { Logger } from './ops/log.js';
import type { PipelineObserver } from './ops/record.js';
import { nextRuntime, restartOnlyChanges, sectionsChanged } from './runtime.js';
import { GatewayListener } from './pipeline/listener.js';
import { logoutEndpoint, refreshEndpoint } from './pipeline/endpoints.js';
import { openStore } from './store/open.js';
import type { KeyStore } from './store/types.js';
import { KeyService, type KeyRevocationEvent } from './keys/service.js';
import type { BoundedVerification } from './keys/refresh.js';
import { TokenService } from './tokens/service.js';
import { formatScopedSubject } from './revocation/ids.js';
import { openRevocation, revocationBackend } from './revocation/open.js';
import type { RevocationCheck } from './revocation/check.js';
import type { RevocationStore } from './revocation/types.js';
import { revocationSource, scopedCheck, startPruning } from './revocation/source.js';
import { buildAuthenticators, evictInvalidated, type AuthenticatorDeps, type BuiltAuthenticators } from './authn/build.js';
import { UsageCredits, withCredits } from './limits/credits.js';
import { openLimiter } from './limits/open.js';
import type { RateLimiter } from './limits/types.js';
import { AdminServer, bearerMatches, type ReadinessCheck } from './ops/admin.js';
import { adminRoutes, adminTokenFor } from './ops/admin-api.js';
import { Metrics } from './ops/metrics.js';

// The composition root: opens the store, the revocation view, the limiter and the
// authenticators, builds the runtime, starts the listeners, and owns reload and close.
// Which config sections a reload applies is declared in runtime.ts.

/**
 * The key store, the revocation view on it and the key and token services: what `serve`
 * and the `keys` and `tokens` commands run on.
 */
export interface Core {
  readonly store: KeyStore;
  readonly revocation: RevocationStore;
  /** The key service of the config last applied: one that changes `apiKeys` or `roles` replaces it. */
  readonly keys: KeyService;
  readonly tokens: TokenService;
  readonly clock: Clock;
  /** Applies a reloaded config's `apiKeys` and `roles` to the key service. */
  configure(config: GatewayConfig): void;
  close(): Promise<void>;
}

export interface CoreOptions {
  clock?: Clock;
  /** Called on every revocation check the backend could not answer. */
  onRevocationFailure?: (err: unknown) => void;
  /** Directory relative `sqlite://` paths resolve against (default: working directory). */
  baseDir?: string;
}

/** Opens the key store (migrated), the revocation view and the key/token services on them. */
export async function openCore(config: GatewayConfig, logger: Logger, opts: CoreOptions = {}): Promise<Core> {
  const clock = opts.clock ?? systemClock;
  const store = await openStore(config.store.url, {
    poolSize: config.store.poolSize,
    migrate: true,
    ...(opts.baseDir === undefined ? {} : { baseDir: opts.baseDir }),
    onError: (err) => logger.warn({ err: err.message }, 'key store connection error'),
  });
  let revocation: RevocationStore;
  try {
    revocation = await openRevocation({
      config: config.revocation,
      databaseUrl: config.store.url,
      source: revocationSource(store, clock, logger),
      logger,
      clock,
      ...(opts.onRevocationFailure === undefined ? {} : { onCheckFailure: opts.onRevocationFailure }),
    });
  } catch (err) {
    await store.close();
    throw err;
  }
  const onRevoke = async (ev: KeyRevocationEvent): Promise<void> => {
    if (ev.kind === 'key') await revocation.revoke(ev.revocationId, ev.expiresAt ?? undefined);
    else if (ev.kind === 'change') await revocation.evict(ev.revocationId);
    else await revocation.revokeSubject(formatScopedSubject('keys', ev.subject), ev.revokedBefore);
  };
  const keyService = (cfg: GatewayConfig) => new KeyService({ store, config: cfg.apiKeys, clock, roles: cfg.roles, onRevoke });
  let keys = keyService(config);
  let keysFrom = config;
  return {
    store, revocation, clock,
    tokens: new TokenService(store, revocation, clock),
    get keys() {
      return keys;
    },
    configure: (cfg) => {
      if (sectionsChanged(keysFrom, cfg, ['apiKeys', 'roles'])) keys = keyService(cfg);
      keysFrom = cfg;
    },
    close: async () => {
      await revocation.close().catch(() => undefined);
      await store.close();
    },
  };
}

export interface PortcullisOptions extends CoreOptions {
  logger: Logger;
  /** The listeners to run (default: both). The admin one alone still verifies JWTs and serves the JWKS. */
  listeners?: { gateway?: boolean; admin?: boolean };
  /** Counts requests in place of the limiter `rateLimits` would open; its owner closes it. */
  limiter?: RateLimiter;
  /** Counts requests while Redis is away (onError: allow) in place of this process's own buckets. */
  limiterFallback?: RateLimiter;
  observers?: PipelineObserver[];
  /** Override listen addresses (tests use port 0). */
  listen?: { host?: string; port?: number };
  admin?: { host?: string; port?: number };
  /** Readiness checks `/readyz` reports besides the store, revocation, JWKS and limits. */
  checks?: readonly ReadinessCheck[];
  /** What `/metrics` serves in place of this process's own metrics text. */
  metricsText?: () => Promise<string>;
  /** How often token revocations that can no longer matter are deleted (default 1 h). */
  pruneIntervalMs?: number;
}

/** A whole running Portcullis: its listeners and what they run on. */
export interface Portcullis {
  /** The gateway listener; undefined when `listeners.gateway` is false. */
  readonly gateway: GatewayListener | undefined;
  /** The admin listener and its address; undefined when `listeners.admin` is false. */
  readonly admin: AdminServer | undefined;
  readonly adminAddress: { host: string; port: number } | undefined;
  readonly adminToken: string;
  readonly core: Core;
  readonly metrics: Metrics;
  /** What `/readyz` reports on (a worker answers its primary with them). */
  readonly checks: readonly ReadinessCheck[];
  /** The config last applied. */
  readonly config: GatewayConfig;
  /** The authenticators serving now (for metrics, the admin API and tests). */
  authenticators(): BuiltAuthenticators;
  /** Applies a new config: the reloadable sections take effect, restart-only changes are logged. */
  reload(next: LoadResult): Promise<void>;
  close(drainMs?: number): Promise<void>;
}

/** The config last applied and the authenticators built from it: what a reload replaces. */
interface Serving {
  config: GatewayConfig;
  authn: BuiltAuthenticators;
}

type AdminPart = Pick<Portcullis, 'admin' | 'adminAddress' | 'adminToken'>;

/** Things undone in reverse at close, after the listeners. */
type Undo = Array<() => unknown>;

/** Opens the store and what runs on it, then the chosen listeners (what `serve` runs). */
export async function startPortcullis(loaded: LoadResult, opts: PortcullisOptions): Promise<Portcullis> {
  const { logger } = opts;
  for (const w of loaded.warnings) logger.warn(w);
  const metrics = new Metrics();
  const core = await openCore(loaded.config, logger, { ...opts, onRevocationFailure: () => metrics.revocationError() });
  const undo: Undo = [() => core.close()];
  const release = async () => {
    for (const u of undo.splice(0).reverse()) await u();
  };
  try {
    const config = loaded.config;
    const deps = { store: core.store, clock: core.clock, logger, onRedis: revocationBackend(config.revocation, config.store.url) === 'redis' };
    const serving: Serving = { config, authn: (await buildAuthenticators(config, deps)).authn };
    serveAuthenticators(serving, core, metrics, opts, undo);
    const revocation = scopedCheck(core.revocation, (ms) => metrics.observeRevocation(ms));
    const runGateway = opts.listeners?.gateway ?? true;
    const counter = runGateway ? (opts.limiter ?? (await openLimiter(config, logger, core.revocation.turn, opts.limiterFallback))) : undefined;
    if (counter !== undefined && opts.limiter === undefined) undo.push(() => counter.close());
    // Keys' usage credits are counted in the store, whichever limiter counts the rates.
    const limiter = counter === undefined ? undefined : withCredits(counter, new UsageCredits(core.store));
    const gateway = runGateway
      ? await GatewayListener.start(await nextRuntime(config, serving.authn), {
          revocation, limiter, logger,
          observers: [metrics, ...(opts.observers ?? [])],
          ...(opts.listen ? { listen: opts.listen } : {}),
          endpoints: { refresh: refreshEndpoint(core, refreshVerification(serving, core)), logout: logoutEndpoint(core, revocation) },
        })
      : undefined;
    const checks: ReadinessCheck[] = [
      { name: 'store', ready: () => core.store.ping().then(() => true, () => false) },
      { name: 'revocation', ready: () => core.revocation.ready() },
      { name: 'jwks', ready: () => serving.authn.jwt?.ready() ?? true },
      ...(limiter === undefined ? [] : [{ name: 'rateLimits', ready: () => limiter.connected() }]),
      ...(opts.checks ?? []),
    ];
    let admin: AdminPart = { admin: undefined, adminAddress: undefined, adminToken: config.admin.token };
    try {
      if (opts.listeners?.admin ?? true) admin = await startAdmin(serving, { core, revocation, metrics, checks }, opts);
    } catch (err) {
      await gateway?.close(0);
      throw err;
    }
    return {
      gateway, ...admin, core, metrics, checks,
      get config() {
        return serving.config;
      },
      authenticators: () => serving.authn,
      reload: (next) => reload(serving, next, { deps, core, gateway, logger }),
      close: async (drainMs) => {
        await admin.admin?.close();
        await gateway?.close(drainMs);
        await release();
      },
    };
  } catch (err) {
    await release().catch(() => undefined);
    throw err;
  }
}

/**
 * Refresh tokens' argon2 runs, in the serving API-key authenticator's verification queue
 * (fair per key id; a key id is under attack by its failed refreshes).
 */
function refreshVerification(serving: Serving, core: Core): BoundedVerification {
  return (keyId, run) => {
    const authn = serving.authn.apiKey;
    return authn === undefined ? run() : authn.bounded(`refresh:${keyId}`, run, () => core.keys.refreshUnderAttack(keyId));
  };
}

/** Evicts the serving authenticators' caches on invalidations, counts their stats, prunes; closes them at the end. */
function serveAuthenticators(serving: Serving, core: Core, metrics: Metrics, opts: PortcullisOptions, undo: Undo): void {
  undo.push(() => {
    serving.authn.jwt?.close();
    return serving.authn.apiKey?.close();
  });
  undo.push(core.revocation.onInvalidate((ev) => evictInvalidated(serving.authn, ev)));
  const pruner = startPruning(core.store, core.clock, opts.logger, opts.pruneIntervalMs ?? 3_600_000);
  undo.push(() => clearInterval(pruner));
  metrics.setCacheSource('jwt', () => serving.authn.jwt?.stats);
  metrics.setCacheSource('apiKey', () => serving.authn.apiKey?.stats);
  metrics.setQueueDepthSource(() => serving.authn.apiKey?.verificationLoad.queued ?? 0);
}

/**
 * Applies `next`: authenticators rebuilt where their sections changed, a new runtime swapped
 * into the gateway listener, the key service reconfigured; restart-only changes are logged.
 */
async function reload(serving: Serving, next: LoadResult, on: { deps: AuthenticatorDeps; core: Core; gateway: GatewayListener | undefined; logger: Logger }): Promise<void> {
  const { gateway, logger } = on;
  const built = await buildAuthenticators(next.config, on.deps, serving);
  const rt = gateway === undefined ? undefined : await nextRuntime(next.config, built.authn, gateway.pipeline.current);
  const before = serving.config;
  serving.config = next.config;
  serving.authn = built.authn;
  if (rt !== undefined) gateway?.swap(rt);
  on.core.configure(next.config);
  for (const w of next.warnings) logger.warn(w);
  const restart = restartOnlyChanges(before, next.config);
  if (restart.length > 0) logger.warn({ file: next.config.file, changed: restart }, `config changes that take a restart: ${restart.join(', ')}; they are not applied until then`);
  // Authenticators replaced by a reload close once requests that started on them are done.
  if (built.replaced.length > 0) setTimeout(() => { for (const a of built.replaced) void a.close(); }, 30_000).unref();
}

/** Starts the admin listener: health, readiness, metrics, the assertion JWKS and the admin API. */
async function startAdmin(serving: Serving, on: { core: Core; revocation: RevocationCheck; metrics: Metrics; checks: readonly ReadinessCheck[] }, opts: PortcullisOptions): Promise<AdminPart> {
  const config = serving.config;
  const adminToken = await adminTokenFor(config.admin.token, config.store.url, opts.baseDir);
  const admin = new AdminServer({
    host: opts.admin?.host ?? config.admin.host,
    port: opts.admin?.port ?? config.admin.port,
    checks: () => on.checks,
    allowedHosts: config.admin.allowedHosts,
    metrics: { contentType: on.metrics.contentType, text: opts.metricsText ?? (() => on.metrics.text()) },
    jwks: () => serving.authn.assertion?.jwks() ?? { keys: [] },
    authorize: adminAuthorizer(adminToken, serving, on.revocation),
    routes: adminRoutes(on.core),
  });
  const adminAddress = await admin.listen();
  opts.logger.info({ address: adminAddress }, 'admin listening');
  return { admin, adminAddress, adminToken };
}

/** The admin API's check: the admin token, or (with `admin.acceptJwt`) a JWT of the highest role. */
function adminAuthorizer(adminToken: string, serving: Serving, revocation: RevocationCheck): (authorization: string | undefined) => Promise<boolean> {
  return async (authorization) => {
    if (bearerMatches(authorization, adminToken)) return true;
    const { config } = serving;
    const jwt = serving.authn.jwt;
    if (!config.admin.acceptJwt || !authorization) return false;
    const m = /^Bearer\s+(\S+)$/i.exec(authorization);
    if (!jwt || !m) return false;
    try {
      const id = await jwt.authenticate({ kind: 'jwt', value: m[1]!, source: 'authorization' });
      return id.roleRank === config.roles.length - 1 && !(await revocation.isRevoked(id));
    } catch {
      return false;
    }
  };
}
