import { Counter } from 'prom-client';
import { ConfigError, loadConfigFile, parseConfig, type GatewayConfig, type LoadResult } from '../config/load.js';
import { startPortcullis } from '../gateway.js';
import { LocalRateLimiter } from '../limits/local.js';
import { answerLimits, WorkerRateLimiter } from '../limits/shared.js';
import { pemsFrom } from '../net/tls.js';
import { createLogger, type Logger } from '../ops/log.js';
import { Supervisor } from '../ops/workers/supervisor.js';
import { asRunning, runningSections } from '../runtime.js';
import { primaryChannel, runWorker, type AppliedConfig, type ReloadAnswer, type WorkerState } from '../ops/workers/worker.js';

/**
 * The primary of `serve --workers N` (docs/reference/workers.md): keeps N workers on the
 * listen port and runs the admin listener for all of them. Resolves once stopped.
 */
export async function servePrimary(file: string, loaded: LoadResult, logger: Logger, count: number, onReload: (reload: (why: string) => void) => () => void): Promise<void> {
  const config = loaded.config;
  // Without Redis the buckets live here, so that the workers together admit at most `limit`;
  // with Redis, here too while it is away (onError: allow): the instance still counts once.
  const local = new LocalRateLimiter(Date.now, config.rateLimits.maxBuckets);
  const restarts = new Counter({ name: 'portcullis_worker_restarts_total', help: 'Worker processes that died and were replaced.', registers: [] });
  // What every worker serves: the text this process applied, never the file as it is now.
  let applied: AppliedConfig = { generation: 1, text: loaded.text, tlsFiles: config.tlsFiles, running: runningSections(config), listenTls: config.tlsFiles.listen ?? null };
  const handlers = { config: () => applied, limit: answerLimits(local) };
  const supervisor = new Supervisor({ count, logger, handlers, onDeath: () => restarts.inc() });
  await supervisor.start();
  let own: { metrics: { registry: { getMetricsAsJSON(): Promise<object> } } } | undefined;
  const pc = await startPortcullis(loaded, {
    logger,
    listeners: { gateway: false },
    // Ready when every worker is, on the config applied here.
    checks: [{ name: 'workers', ready: () => supervisor.ready((v) => (v as WorkerState | undefined)?.ready === true && (v as WorkerState).generation === applied.generation) }],
    metricsText: async () => supervisor.metrics(own ? [await own.metrics.registry.getMetricsAsJSON()] : []),
  }).catch(async (err: unknown) => {
    await supervisor.stop(0);
    throw err;
  });
  own = pc;
  pc.metrics.registry.registerMetric(restarts);
  logger.info({ address: supervisor.address(), workers: count }, 'portcullis listening');

  let reloading = Promise.resolve();
  const reload = (why: string) => {
    reloading = reloading.then(async () => {
      try {
        const next = await loadConfigFile(file);
        await pc.reload(next);
        applied = nextApplied(applied, next);
        await reloadWorkers(supervisor, applied, logger, { file, why });
      } catch (err) {
        const problems = err instanceof ConfigError ? err.problems : [String(err)];
        logger.error({ file, why, problems }, 'config reload refused; still serving the previous config');
      }
    });
  };
  const stopWatching = onReload(reload);
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      logger.info({ signal, workers: supervisor.listening() }, 'shutting down: draining every worker');
      stopWatching();
      supervisor
        .stop(pc.config.shutdown.drainTimeout)
        .then(() => pc.close())
        .then(resolve, (err: unknown) => {
          logger.error({ err }, 'error while shutting down');
          resolve();
        });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  await local.close();
}

/** What the workers get once the primary applied `next`: new certificates apply; turning TLS on or off waits for a restart (as in each worker). */
function nextApplied(applied: AppliedConfig, next: LoadResult): AppliedConfig {
  const listenTls = applied.listenTls !== null && next.config.tlsFiles.listen !== undefined ? next.config.tlsFiles.listen : applied.listenTls;
  return { ...applied, generation: applied.generation + 1, text: next.text, tlsFiles: next.config.tlsFiles, listenTls };
}

/** Hands `applied` to every worker (one still starting answers once it has started and applied it) and logs who refused. */
async function reloadWorkers(supervisor: Supervisor, applied: AppliedConfig, logger: Logger, at: { file: string; why: string }): Promise<void> {
  const answers = await supervisor.ask<ReloadAnswer>('reload', applied, 30_000);
  const failed = answers.filter((a) => a.error !== undefined || a.value?.ok !== true || a.value.generation !== applied.generation);
  if (failed.length > 0) logger.error({ ...at, generation: applied.generation, failed }, 'config reload refused by some workers: not ready until they take it');
  else logger.info({ ...at, generation: applied.generation, workers: answers.length }, 'config reloaded');
}

/**
 * One worker of `serve --workers N`: the gateway listener alone, answering its primary, on
 * the config the primary applied (never the file as it is now: it may have been edited
 * without a reload).
 */
export async function serveWorker(file: string): Promise<void> {
  const slot = Number(process.env.PORTCULLIS_WORKER_SLOT ?? 0);
  let logger: Logger | undefined;
  await runWorker(async (initial) => {
    // The text and PEM files the primary applied, on the restart-only sections it started on.
    const newest = parseConfig(initial.text, file, process.env, pemsFrom(initial.tlsFiles));
    const loaded = { ...newest, config: servingTls(asRunning(newest.config, initial.running), initial) };
    const log = (logger = createLogger(loaded.config.log));
    // The primary's buckets: the limiter without Redis, the fallback while Redis is away.
    const viaPrimary = new WorkerRateLimiter(primaryChannel(), loaded.config.revocation.timeout);
    const pc = await startPortcullis(loaded, {
      logger: log,
      listeners: { admin: false },
      ...(loaded.config.revocation.redis.trim() === '' ? { limiter: viaPrimary } : { limiterFallback: viaPrimary }),
    });
    log.info({ worker: slot, generation: initial.generation, address: pc.gateway?.address() }, 'worker listening');
    return {
      logger: log,
      address: () => pc.gateway?.address(),
      ready: async () => (await Promise.all(pc.checks.map((c) => Promise.resolve(c.ready()).catch(() => false)))).every(Boolean),
      metrics: () => pc.metrics.registry.getMetricsAsJSON(),
      reload: async (next) => {
        try {
          await pc.reload(parseConfig(next.text, file, process.env, pemsFrom(next.tlsFiles)));
          log.info({ worker: slot, generation: next.generation }, 'worker reloaded');
          return { ok: true };
        } catch (err) {
          return { ok: false, problems: err instanceof ConfigError ? err.problems : [String(err)] };
        }
      },
      close: (drainMs) => pc.close(drainMs),
    };
  });
  logger?.flush?.();
}

/** `config` with the listener's protocol and certificates the instance serves (see {@link AppliedConfig}). */
function servingTls(config: GatewayConfig, applied: AppliedConfig): GatewayConfig {
  const served = applied.listenTls ?? undefined;
  const started = (applied.running.listen as GatewayConfig['listen'] | undefined)?.tls;
  const tls = served === undefined ? undefined : (config.listen.tls ?? started);
  return Object.freeze({ ...config, listen: Object.freeze({ ...config.listen, tls }), tlsFiles: Object.freeze({ ...config.tlsFiles, listen: served }) });
}
