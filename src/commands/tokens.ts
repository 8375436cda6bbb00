import type { Command } from 'commander';
import type { GatewayConfig } from '../config/load.js';
import { createLogger } from '../ops/log.js';
import { openCore } from '../gateway.js';
import { CommandError, loadCommandConfig, processIo, type Io } from './io.js';

/** JWT revocation as a command performs it, on the configured store. */
export interface TokenOps {
  revokeJti(jti: string, until?: number): Promise<{ revocationId: string; until: number | null }>;
  revokeSubject(subject: string): Promise<{ subject: string; revokedBefore: number }>;
  close(): Promise<void>;
}

export async function openTokenOps(config: GatewayConfig, io: Io): Promise<TokenOps> {
  const logger = createLogger({ level: 'warn', pretty: false }, { write: (s: string) => io.err(s) });
  const core = await openCore(config, logger);
  // The revocation must reach the fleet: wait for the revocation layer to connect.
  await core.revocation.waitReady(5_000);
  return {
    revokeJti: (jti, until) => core.tokens.revokeJti(jti, until),
    revokeSubject: (s) => core.tokens.revokeSubject(s),
    close: () => core.close(),
  };
}

/** `portcullis tokens revoke --jti J [--until ISO]` / `--subject S` (docs/reference/cli.md). */
export function registerTokensCommand(program: Command, io: Io = processIo, open: typeof openTokenOps = openTokenOps): Command {
  const tokens = program.command('tokens').description('revoke JWTs');
  tokens
    .command('revoke')
    .description('revoke one JWT by jti, or every JWT of a subject issued before now')
    .option('--jti <jti>', 'the token’s jti')
    .option('--until <iso>', 'keep the revocation until this time (when the token expires anyway)')
    .option('--subject <subject>', 'revoke every JWT of this subject issued before now')
    .option('--json', 'print JSON')
    .action(async (o: { jti?: string; until?: string; subject?: string; json?: boolean }, cmd: Command) => {
      if ((o.jti === undefined) === (o.subject === undefined)) throw new CommandError('give exactly one of --jti or --subject');
      let until: number | undefined;
      if (o.until !== undefined) {
        if (o.subject !== undefined) throw new CommandError('--until goes with --jti');
        until = Date.parse(o.until);
        if (!Number.isFinite(until)) throw new CommandError(`--until: not an ISO 8601 time: ${o.until}`);
      }
      const config = (await loadCommandConfig(cmd, io)).config;
      let ops: TokenOps;
      try {
        ops = await open(config, io);
      } catch (err) {
        if (err instanceof CommandError) throw err;
        throw new CommandError(`cannot open the key store: ${(err as Error).message}`);
      }
      try {
        if (o.jti !== undefined) {
          const r = await ops.revokeJti(o.jti, until);
          io.out(o.json ? JSON.stringify({ revoked: r.revocationId, jti: o.jti, until: r.until === null ? null : new Date(r.until).toISOString() }) : `Revoked the token with jti ${o.jti}${r.until === null ? '' : ` until ${new Date(r.until).toISOString()}`}.`);
        } else {
          const r = await ops.revokeSubject(o.subject!);
          io.out(o.json ? JSON.stringify({ subject: r.subject, revokedBefore: new Date(r.revokedBefore).toISOString() }) : `Revoked every token of subject ${r.subject} issued before ${new Date(r.revokedBefore).toISOString()}.`);
        }
      } catch (err) {
        if (err instanceof CommandError) throw err;
        throw new CommandError((err as Error).message);
      } finally {
        await ops.close().catch(() => undefined);
      }
    });
  return tokens;
}
