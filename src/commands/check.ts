import type { Command } from 'commander';
import { ConfigError, loadConfigFile } from '../config/load.js';
import { CommandError, type Io } from './io.js';

export function registerCheckCommand(program: Command, io: Io): void {
  program
    .command('check')
    .description('validate the config file; errors as FILE:LINE:COL message, warnings for routes that can never match')
    .option('--json', 'print the result as JSON')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const file = cmd.optsWithGlobals().config as string;
      try {
        const { config, warnings } = await loadConfigFile(file);
        if (opts.json) io.out(JSON.stringify({ valid: true, file, routes: config.routes.length, warnings }));
        else {
          for (const w of warnings) io.err(w);
          io.out(`${file}: valid (${config.routes.length} routes, ${Object.keys(config.upstreams).length} upstreams${warnings.length ? `, ${warnings.length} warning(s)` : ''})`);
        }
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        if (opts.json) io.out(JSON.stringify({ valid: false, file, errors: err.problems }));
        else for (const p of err.problems) io.err(p);
        throw new CommandError(`${file}: invalid (${err.problems.length} error(s))`);
      }
    });
}
