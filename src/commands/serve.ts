import cluster from 'node:cluster';
import { readFileSync, watch } from 'node:fs';
import { availableParallelism } from 'node:os';
import type { Command } from 'commander';
import { ConfigError, loadConfigFile, type LoadResult } from '../config/load.js';
import { createLogger, type Logger } from '../ops/log.js';
import { startPortcullis } from '../gateway.js';
import { parseStoreUrl } from '../store/open.js';
import { CommandError, type Io } from './io.js';
import { servePrimary, serveWorker } from './serve-workers.js';

/**
 * The CPUs this process may use: the CPUs it may run on, capped by a cgroup CPU quota
 * (a container's CPU limit: `cpu.max` in cgroup v2, `cpu.cfs_quota_us` in v1) — a pod
 * limited to 2 CPUs on a 64-CPU node runs 2 workers, not 64.
 */
export function availableCpus(read: (file: string) => string = (f) => readFileSync(f, 'utf8')): number {
  const cpus = availableParallelism();
  const quota = (q: number, period: number) => (q > 0 && period > 0 ? Math.max(1, Math.ceil(q / period)) : cpus);
  try {
    const [q, period] = read('/sys/fs/cgroup/cpu.max').trim().split(/\s+/);
    if (q !== undefined && q !== 'max') return Math.min(cpus, quota(Number(q), Number(period ?? 100_000)));
    return cpus;
  } catch {
    // Not cgroup v2; try v1.
  }
  try {
    return Math.min(cpus, quota(Number(read('/sys/fs/cgroup/cpu/cpu.cfs_quota_us')), Number(read('/sys/fs/cgroup/cpu/cpu.cfs_period_us'))));
  } catch {
    return cpus;
  }
}

/** `--workers`/`workers` as a count: a whole number from 1 to 256, or `auto` (one per available CPU). */
export function workerCount(value: number | string, cpus: () => number = availableCpus): number {
  if (value === 'auto') return cpus();
  const n = typeof value === 'number' ? value : /^\d+$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isInteger(n) || n < 1 || n > 256) throw new CommandError(`--workers: expected a whole number from 1 to 256 or "auto", got ${JSON.stringify(String(value))}`);
  return n;
}

export function registerServeCommand(program: Command, io: Io): void {
  program
    .command('serve')
    .description('run the gateway')
    .option('--watch', 'reload when the config file changes')
    .option('--workers <n>', 'worker processes sharing the listen port: a number or auto (default: the config\'s workers, 1)')
    .action(async (opts: { watch?: boolean; workers?: string }, cmd: Command) => {
      const file = cmd.optsWithGlobals().config as string;
      if (cluster.isWorker) {
        // A worker serves the config its primary applied, handed over IPC.
        await serveWorker(file);
        // Closed and disconnected: nothing should hold the process, but never outlive the drain.
        setTimeout(() => process.exit(0), 2_000).unref();
        return;
      }
      let loaded: LoadResult;
      try {
        loaded = await loadConfigFile(file);
      } catch (err) {
        if (err instanceof ConfigError) {
          for (const p of err.problems) io.err(p);
          throw new CommandError(`${file}: invalid config, not starting`);
        }
        throw err;
      }
      const logger = createLogger(loaded.config.log);
      const count = workerCount(opts.workers ?? loaded.config.workers);
      if (count > 1) {
        const loc = parseStoreUrl(loaded.config.store.url);
        if (loc.kind === 'sqlite' && loc.file === undefined) throw new CommandError('--workers: several workers need a store they can all open: sqlite://FILE or postgres:// (each process would have its own sqlite://memory)');
        await servePrimary(file, loaded, logger, count, (reload) => reloadTriggers(file, opts.watch === true, reload));
      } else {
        await serveSingle(file, loaded, logger, opts.watch === true);
      }
      logger.info('stopped');
      logger.flush?.();
    });
}

/** SIGHUP, and with `--watch` changes to the file, call `reload`; the returned function stops watching. */
function reloadTriggers(file: string, watchFile: boolean, reload: (why: string) => void): () => void {
  process.on('SIGHUP', () => reload('SIGHUP'));
  let debounce: NodeJS.Timeout | undefined;
  const watcher = watchFile
    ? watch(file, () => {
        clearTimeout(debounce);
        debounce = setTimeout(() => reload('watch'), 100);
      })
    : undefined;
  return () => watcher?.close();
}

/** One process: the gateway and the admin listener. Resolves once stopped. */
async function serveSingle(file: string, loaded: LoadResult, logger: Logger, watchFile: boolean): Promise<void> {
  const gw = await startPortcullis(loaded, { logger });
  let reloading = Promise.resolve();
  const reload = (why: string) => {
    reloading = reloading.then(async () => {
      try {
        const next = await loadConfigFile(file);
        await gw.reload(next);
        logger.info({ file, why }, 'config reloaded');
      } catch (err) {
        const problems = err instanceof ConfigError ? err.problems : [String(err)];
        logger.error({ file, why, problems }, 'config reload refused; still serving the previous config');
      }
    });
  };
  const stopWatching = reloadTriggers(file, watchFile, reload);
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      logger.info({ signal }, 'shutting down: draining in-flight requests');
      stopWatching();
      gw.close().then(resolve, (err: unknown) => {
        logger.error({ err }, 'error while shutting down');
        resolve();
      });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}
