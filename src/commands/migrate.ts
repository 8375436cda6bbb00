import type { Command } from 'commander';
import { ConfigError, loadConfigFile, type GatewayConfig } from '../config/load.js';
import { isStoreError } from '../store/errors.js';
import { openStore } from '../store/open.js';
import type { MigrationResult } from '../store/types.js';
import { CommandError, processIo, type Io } from './io.js';

/**
 * Registers `migrate`: creates or upgrades the store schema (idempotent; safe while other
 * instances migrate the same PostgreSQL database).
 */
export function registerMigrateCommand(program: Command, io: Io = processIo): Command {
  return program
    .command('migrate')
    .description('create or upgrade the key store schema')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }, cmd: Command) => {
      const file = cmd.optsWithGlobals().config as string;
      let config: GatewayConfig;
      try {
        config = (await loadConfigFile(file)).config;
      } catch (err) {
        if (err instanceof ConfigError) {
          for (const p of err.problems) io.err(p);
          throw new CommandError(`${file}: invalid config`);
        }
        throw new CommandError(`${file}: ${(err as Error).message}`);
      }
      let result: MigrationResult;
      try {
        const store = await openStore(config.store.url, { poolSize: 1 });
        try {
          result = await store.migrate();
        } finally {
          await store.close();
        }
      } catch (err) {
        throw new CommandError(isStoreError(err) ? err.message : `migration failed: ${(err as Error).message}`);
      }
      const where = redact(config.store.url);
      if (o.json) io.out(JSON.stringify({ store: where, applied: result.applied, current: result.current }));
      else if (result.applied.length === 0) io.out(`${where}: schema up to date (${result.current.at(-1) ?? 'empty'}).`);
      else io.out(`${where}: applied ${result.applied.join(', ')}.`);
    });
}

/** The store URL without a password, for output. */
function redact(url: string): string {
  return url.replace(/^(postgres(?:ql)?:\/\/[^:/@]+):[^@]*@/, '$1:***@');
}
