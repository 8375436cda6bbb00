import { Command, CommanderError } from 'commander';
import { CommandError, processIo, type Io } from './commands/io.js';
import { registerCheckCommand } from './commands/check.js';
import { registerExplainCommand } from './commands/explain.js';
import { registerServeCommand } from './commands/serve.js';
import { registerMigrateCommand } from './commands/migrate.js';
import { registerKeysCommand } from './commands/keys.js';
import { registerTokensCommand } from './commands/tokens.js';
import { explainVerifiers } from './commands/explain-verify.js';

/** Builds the `portcullis` program. `io` is injectable so tests run commands in-process. */
export function buildProgram(io: Io = processIo): Command {
  const program = new Command('portcullis')
    .description('Authentication gateway: verifies JWTs and API keys, enforces route rules, forwards trusted identity.')
    .option('-c, --config <file>', 'config file', './gateway.config.yaml')
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) })
    .showHelpAfterError();
  registerServeCommand(program, io);
  registerCheckCommand(program, io);
  registerExplainCommand(program, io, explainVerifiers);
  registerMigrateCommand(program, io);
  registerKeysCommand(program, io);
  registerTokensCommand(program, io);
  return program;
}

/** Runs the CLI; resolves to the process exit code. */
export async function main(argv: readonly string[], io: Io = processIo): Promise<number> {
  const program = buildProgram(io);
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    if (err instanceof CommandError) {
      io.err(`portcullis: ${err.message}`);
      return err.exitCode;
    }
    io.err(`portcullis: ${(err as Error)?.message ?? err}`);
    return 1;
  }
}
