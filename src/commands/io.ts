import type { Command } from 'commander';
import { ConfigError, loadConfigFile, type LoadResult } from '../config/load.js';
/** Output helpers shared by the commands: human text by default, JSON with --json, errors to stderr. */
export interface Io {
  out(text: string): void;
  err(text: string): void;
}

export const processIo: Io = {
  out: (t) => process.stdout.write(t.endsWith('\n') ? t : t + '\n'),
  err: (t) => process.stderr.write(t.endsWith('\n') ? t : t + '\n'),
};

/** Thrown by a command to end with a message and an exit code (no stack trace). */
export class CommandError extends Error {
  override readonly name = 'CommandError';
  readonly exitCode: number;
  constructor(message: string, exitCode = 1) {
    super(message);
    this.exitCode = exitCode;
  }
}

/** Loads the `-c/--config` file of a command; config problems go to stderr as `FILE:LINE:COL message`. */
export async function loadCommandConfig(cmd: Command, io: Io): Promise<LoadResult> {
  const file = cmd.optsWithGlobals().config as string;
  try {
    return await loadConfigFile(file);
  } catch (err) {
    if (err instanceof ConfigError) {
      for (const p of err.problems) io.err(p);
      throw new CommandError(`${file}: invalid config`);
    }
    throw new CommandError(`${file}: ${(err as Error).message}`);
  }
}
