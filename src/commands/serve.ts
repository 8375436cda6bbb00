import { watch } from 'node:fs';
import type { Command } from 'commander';
import { ConfigError, loadConfigFile, type LoadResult } from '../config/load.js';
import { createLogger } from '../ops/log.js';
import { startPortcullis } from '../gateway.js';
import { CommandError, type Io } from './io.js';

export function registerServeCommand(program: Command, io: Io): void {
  program
    .command('serve')
    .description('run the gateway')
    .option('--watch', 'reload when the config file changes')
    .action(async (opts: { watch?: boolean }, cmd: Command) => {
      const file = cmd.optsWithGlobals().config as string;
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
      process.on('SIGHUP', () => reload('SIGHUP'));
      let debounce: NodeJS.Timeout | undefined;
      const watcher = opts.watch
        ? watch(file, () => {
            clearTimeout(debounce);
            debounce = setTimeout(() => reload('watch'), 100);
          })
        : undefined;

      await new Promise<void>((resolve) => {
        const stop = (signal: string) => {
          logger.info({ signal }, 'shutting down: draining in-flight requests');
          watcher?.close();
          gw.close().then(resolve, (err) => {
            logger.error({ err }, 'error while shutting down');
            resolve();
          });
        };
        process.once('SIGTERM', () => stop('SIGTERM'));
        process.once('SIGINT', () => stop('SIGINT'));
      });
      logger.info('stopped');
      logger.flush?.();
    });
}
