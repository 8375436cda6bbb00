import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { parseDuration } from '../config/duration.js';
import type { GatewayConfig } from '../config/load.js';
import { AnnouncementError, KeyServiceError, type CreateKeyOptions, type CreatedKey, type ImportResult, type KeyInfo, type UpdateKeyOptions } from '../keys/service.js';
import { createLogger } from '../ops/log.js';
import { openCore } from '../gateway.js';
import { isStoreError } from '../store/errors.js';
import { CommandError, loadCommandConfig, processIo, type Io } from './io.js';
import { limitOptions, limitText } from './key-limits.js';
import { createdJson, createdText, iso, keyJson, listText } from './keys-output.js';

/** The key operations a command performs, on the configured store. */
export interface KeyOps {
  create(opts: CreateKeyOptions): Promise<CreatedKey>;
  list(filter?: { subject?: string | undefined }): Promise<KeyInfo[]>;
  revoke(id: string): Promise<{ key: KeyInfo; changed: boolean }>;
  revokeSubject(subject: string): Promise<{ revoked: readonly string[] }>;
  revokeByName(name: string, subject?: string): Promise<{ revoked: readonly string[] }>;
  update(id: string, changes: UpdateKeyOptions): Promise<KeyInfo>;
  rotate(id: string, graceMs?: number): Promise<CreatedKey & { graceUntil: number }>;
  importKeys(content: string, file: string): Promise<ImportResult>;
  close(): Promise<void>;
}

/** Replaceable wiring of the key commands (tests, embedding). */
export interface KeysCommandDeps {
  /** Opens the operations for a loaded config; default {@link openKeyOps}. */
  readonly open?: (config: GatewayConfig, io: Io) => Promise<KeyOps>;
}

/**
 * Opens the store (migrating it) with revocation publishing wired, as `serve` does. The
 * embedded store's file is shared with running gateways, which see each change within 1 s.
 */
export async function openKeyOps(config: GatewayConfig, io: Io): Promise<KeyOps> {
  const logger = createLogger({ level: 'warn', pretty: false }, { write: (s: string) => io.err(s) });
  const core = await openCore(config, logger);
  // Revocations made by this command must reach the fleet: wait until the revocation
  // layer is connected (it is only ever slow when its backend is unreachable).
  await core.revocation.waitReady(5_000);
  const k = core.keys;
  return {
    create: (o) => k.create(o),
    list: (f) => k.list(f),
    revoke: (id) => k.revoke(id),
    revokeSubject: (s) => k.revokeSubject(s),
    revokeByName: (n, s) => k.revokeByName(n, s),
    update: (id, c) => k.update(id, c),
    rotate: (id, g) => k.rotate(id, g),
    importKeys: (c, f) => k.importKeys(c, f),
    close: () => core.close(),
  };
}

function durationOption(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const ms = parseDuration(value);
  if (ms === undefined) throw new CommandError(`${name}: expected a duration like 30s, 15m, 720h or 7d, got "${value}"`);
  return ms;
}

/**
 * Runs an operation that makes a key; when it is stored but its announcement failed, its
 * result still comes back (the new key's secret is shown once, now or never) with the error.
 */
async function keepingResult<T>(op: () => Promise<T>): Promise<[T, AnnouncementError<T> | undefined]> {
  try {
    return [await op(), undefined];
  } catch (err) {
    if (err instanceof AnnouncementError) return [err.result as T, err];
    throw err;
  }
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

function splitList(value: string | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  return value.split(',').map((s) => s.trim()).filter((s) => s !== '');
}

/**
 * Loads the config, opens the key operations, runs `fn`, closes. Every failure becomes a
 * CommandError (message to stderr, exit 1); secrets never appear in messages.
 */
async function withKeys<T>(cmd: Command, io: Io, deps: KeysCommandDeps, fn: (ops: KeyOps) => Promise<T>): Promise<T> {
  const config = (await loadCommandConfig(cmd, io)).config;
  let ops: KeyOps;
  try {
    ops = await (deps.open ?? openKeyOps)(config, io);
  } catch (err) {
    if (err instanceof CommandError) throw err;
    throw new CommandError(isStoreError(err) ? err.message : `cannot open the key store: ${(err as Error).message}`);
  }
  try {
    return await fn(ops);
  } catch (err) {
    if (err instanceof KeyServiceError) {
      for (const p of err.problems) io.err(p);
      throw new CommandError(err.message);
    }
    if (err instanceof CommandError) throw err;
    throw new CommandError((err as Error).message);
  } finally {
    await ops.close().catch(() => undefined);
  }
}

/**
 * Registers `keys create|list|update|revoke|rotate|import` on the root program (which defines
 * `-c, --config`). Every command opens the store itself (applying pending migrations);
 * running gateways hear its changes through the store's notices.
 */
export function registerKeysCommand(program: Command, io: Io = processIo, deps: KeysCommandDeps = {}): Command {
  const keys = program.command('keys').description('manage API keys');
  createCommand(keys, io, deps);
  listCommand(keys, io, deps);
  revokeCommand(keys, io, deps);
  updateCommand(keys, io, deps);
  rotateCommand(keys, io, deps);
  importCommand(keys, io, deps);
  return keys;
}

function createCommand(keys: Command, io: Io, deps: KeysCommandDeps): void {
  keys
    .command('create')
    .description('create a key and print it once')
    .requiredOption('--subject <subject>', 'subject the key authenticates')
    .requiredOption('--role <role>', 'role of the key')
    .option('--scopes <list>', 'comma-separated scopes')
    .option('--name <name>', 'a name for the key')
    .option('--expires <duration>', 'lifetime, e.g. 720h (default apiKeys.defaultTtl), or "never"')
    .option('--not-before <duration>', 'the key starts working after this long, e.g. 10m')
    .option('--allow-ip <cidr>', 'client address or CIDR allowed to use the key (repeatable)', collect)
    .option('--audience <audience>', 'audience the key is restricted to (repeatable)', collect)
    .option('--replace', "revoke the subject's other keys with the same name")
    .option('--refreshable', 'also issue a refresh token')
    .option('--rate-limit <N/D>', "the key's own rate limit on every route, e.g. 100/1m")
    .option('--uses <N>', 'usage credits: N admitted requests, shared by the key and its successors')
    .option('--json', 'print JSON')
    .action(async (o: { subject: string; role: string; scopes?: string; name?: string; expires?: string; notBefore?: string; allowIp?: string[]; audience?: string[]; replace?: boolean; refreshable?: boolean; rateLimit?: string; uses?: string; json?: boolean }, cmd: Command) => {
      const expires = o.expires === 'never' ? null : durationOption('--expires', o.expires);
      const notBefore = durationOption('--not-before', o.notBefore);
      const scopes = splitList(o.scopes);
      const opts: CreateKeyOptions = {
        subject: o.subject,
        role: o.role,
        ...(scopes === undefined ? {} : { scopes }),
        ...(o.name === undefined ? {} : { name: o.name }),
        ...(expires === undefined ? {} : { expiresIn: expires }),
        ...(notBefore === undefined ? {} : { notBeforeIn: notBefore }),
        ...(o.allowIp === undefined ? {} : { allowIps: o.allowIp }),
        ...(o.audience === undefined ? {} : { audiences: o.audience }),
        replace: o.replace === true,
        refreshable: o.refreshable === true,
        ...limitOptions(o),
      };
      await withKeys(cmd, io, deps, async (ops) => {
        const [c, failed] = await keepingResult(() => ops.create(opts));
        io.out(o.json ? JSON.stringify(createdJson(c)) : createdText(c, `Created key ${c.id}`));
        if (failed !== undefined) throw new CommandError(`keys create: the new key above is stored, but the keys it replaces were not announced: ${failed.message}`);
      });
    });
}

function listCommand(keys: Command, io: Io, deps: KeysCommandDeps): void {
  keys
    .command('list')
    .description('list keys (never their secrets)')
    .option('--subject <subject>', 'only the keys of this subject')
    .option('--json', 'print JSON')
    .action(async (o: { subject?: string; json?: boolean }, cmd: Command) => {
      await withKeys(cmd, io, deps, async (ops) => {
        const list = await ops.list(o.subject === undefined ? undefined : { subject: o.subject });
        io.out(o.json ? JSON.stringify(list.map(keyJson)) : listText(list));
      });
    });
}

function revokeCommand(keys: Command, io: Io, deps: KeysCommandDeps): void {
  keys
    .command('revoke')
    .description('revoke a key by id, every key of a subject, or every key with a name')
    .argument('[id]', 'key id')
    .option('--subject <subject>', "revoke all of the subject's keys (with --name: only the subject's keys of that name)")
    .option('--name <name>', 'revoke every key with this name (a job\'s keys when the job ends)')
    .option('--json', 'print JSON')
    .action(async (id: string | undefined, o: { subject?: string; name?: string; json?: boolean }, cmd: Command) => {
      if (id !== undefined ? o.subject !== undefined || o.name !== undefined : o.subject === undefined && o.name === undefined) {
        throw new CommandError('keys revoke: give a key ID, --subject S, or --name N [--subject S]');
      }
      await withKeys(cmd, io, deps, async (ops) => {
        if (o.name !== undefined) {
          const r = await ops.revokeByName(o.name, o.subject);
          const whose = o.subject === undefined ? '' : ` of subject ${o.subject}`;
          if (o.json) io.out(JSON.stringify({ name: o.name, ...(o.subject === undefined ? {} : { subject: o.subject }), revoked: r.revoked }));
          else io.out(`Revoked ${r.revoked.length} key(s) named ${o.name}${whose}${r.revoked.length ? `: ${r.revoked.join(', ')}` : ''}.`);
        } else if (id !== undefined) {
          const r = await ops.revoke(id);
          if (o.json) io.out(JSON.stringify({ id, revoked: true, changed: r.changed, revokedAt: iso(r.key.revokedAt) }));
          else io.out(r.changed ? `Revoked key ${id}.` : `Key ${id} was already revoked (at ${iso(r.key.revokedAt)}); the revocation was announced again.`);
        } else {
          const r = await ops.revokeSubject(o.subject!);
          if (o.json) io.out(JSON.stringify({ subject: o.subject, revoked: r.revoked }));
          else io.out(`Revoked ${r.revoked.length} key(s) of subject ${o.subject}${r.revoked.length ? `: ${r.revoked.join(', ')}` : ''}; their refresh tokens stop too.`);
        }
      });
    });
}

function updateCommand(keys: Command, io: Io, deps: KeysCommandDeps): void {
  keys
    .command('update')
    .description('change a key in place (same id, same secret); every instance sees it within 1 s')
    .argument('<id>', 'key id')
    .option('--role <role>', 'new role')
    .option('--scopes <list>', 'new comma-separated scopes (replace the old ones; "" for none)')
    .option('--expires <duration>', 'new lifetime from now, e.g. 720h, or "never"')
    .option('--rate-limit <N/D>', 'the key\'s own rate limit, e.g. 100/1m, or "none"')
    .option('--uses <N>', 'set (refill) the usage credits of the key\'s lineage, or "unlimited"')
    .option('--json', 'print JSON')
    .action(async (id: string, o: { role?: string; scopes?: string; expires?: string; rateLimit?: string; uses?: string; json?: boolean }, cmd: Command) => {
      const expires = o.expires === 'never' ? null : durationOption('--expires', o.expires);
      const scopes = splitList(o.scopes);
      const changes: UpdateKeyOptions = {
        ...(o.role === undefined ? {} : { role: o.role }),
        ...(scopes === undefined ? {} : { scopes }),
        ...(expires === undefined ? {} : { expiresIn: expires }),
        ...limitOptions(o),
      };
      await withKeys(cmd, io, deps, async (ops) => {
        const k = await ops.update(id, changes);
        const limits = limitText(k);
        if (o.json) io.out(JSON.stringify(keyJson(k)));
        else io.out(`Updated key ${k.id}: role ${k.role}, scopes ${k.scopes.length ? k.scopes.join(' ') : '-'}, expires ${iso(k.expiresAt) ?? 'never'}${limits === '' ? '' : `, ${limits}`}.`);
      });
    });
}

function rotateCommand(keys: Command, io: Io, deps: KeysCommandDeps): void {
  keys
    .command('rotate')
    .description('issue a successor with the same grants; the old key works until the grace ends')
    .argument('<id>', 'key id')
    .option('--grace <duration>', 'how long the old key keeps working', '1h')
    .option('--json', 'print JSON')
    .action(async (id: string, o: { grace: string; json?: boolean }, cmd: Command) => {
      const grace = durationOption('--grace', o.grace)!;
      await withKeys(cmd, io, deps, async (ops) => {
        const [c, failed] = await keepingResult(() => ops.rotate(id, grace));
        if (o.json) io.out(JSON.stringify(createdJson(c)));
        else io.out(`${createdText(c, `Rotated key ${id} → ${c.id}`)}\n\nThe old key ${id} keeps working until ${iso(c.graceUntil)}.`);
        if (failed !== undefined) throw new CommandError(`keys rotate: the new key above is stored, but the rotation was not announced: ${failed.message}`);
      });
    });
}

function importCommand(keys: Command, io: Io, deps: KeysCommandDeps): void {
  keys
    .command('import')
    .description('import existing keys from JSON lines (key or sha256, digestOf, subject, role, scopes, name, expiresAt)')
    .requiredOption('--file <file>', 'JSON-lines file')
    .option('--json', 'print JSON')
    .action(async (o: { file: string; json?: boolean }, cmd: Command) => {
      let content: string;
      try {
        content = await readFile(o.file, 'utf8');
      } catch (err) {
        throw new CommandError(`${o.file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
      }
      await withKeys(cmd, io, deps, async (ops) => {
        try {
          const r = await ops.importKeys(content, o.file);
          if (o.json) io.out(JSON.stringify({ imported: r.imported.length, keys: r.imported.map(keyJson) }));
          else io.out(`Imported ${r.imported.length} key(s) from ${o.file}.\n${listText(r.imported)}`);
        } catch (err) {
          if (o.json && err instanceof KeyServiceError && err.code === 'import-invalid') io.out(JSON.stringify({ imported: 0, errors: err.problems }));
          throw err;
        }
      });
    });
}
