import t from 'tap';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Command, CommanderError } from 'commander';
import { registerKeysCommand } from '../../src/commands/keys.js';
import { CommandError, type Io } from '../../src/commands/io.js';
import { loadConfigFile } from '../../src/config/load.js';
import { createLogger } from '../../src/ops/log.js';
import { startPortcullis } from '../../src/gateway.js';
import { GatewayError } from '../../src/http/problem.js';
import { tempDir } from '../store/helpers.js';

// While a running gateway has the embedded store's file open, key commands act on the same
// file, and the gateway sees what they did.

async function run(config: string, ...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: Io = { out: (s) => void (out += s + '\n'), err: (s) => void (err += s + '\n') };
  const program = new Command('portcullis').option('-c, --config <file>', 'config file').exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) });
  registerKeysCommand(program, io);
  let code = 0;
  try {
    await program.parseAsync(['-c', config, ...args], { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) code = e.exitCode;
    else if (e instanceof CommandError) {
      io.err(e.message);
      code = e.exitCode;
    } else throw e;
  }
  return { code, out, err };
}

// Created on the top-level test so it is removed only after the gateway has closed.
const dir = await tempDir(t, 'pcl-admin-');

t.test('key commands on the file of a running gateway', async (t) => {
  const file = join(dir, 'data', 'portcullis.db');
  const yaml = (adminPort: number): string => [
    'listen: { host: 127.0.0.1, port: 0 }',
    `admin: { host: 127.0.0.1, port: ${adminPort} }`,
    'upstreams:',
    '  api: { url: "http://127.0.0.1:9" }',
    'roles: [basic, admin]',
    `store: { url: "sqlite://${file}" }`,
    'routes:',
    '  - match: { path: "/**" }',
    '    upstream: api',
    '',
  ].join('\n');
  const serveCfg = join(dir, 'serve.yaml');
  await writeFile(serveCfg, yaml(0));
  const pc = await startPortcullis(await loadConfigFile(serveCfg), { logger: createLogger({ level: 'silent', pretty: false }) });
  t.teardown(() => pc.close(0));
  const cliCfg = join(dir, 'cli.yaml');
  await writeFile(cliCfg, yaml(pc.adminAddress!.port));

  const create = await run(cliCfg, 'keys', 'create', '--subject', 'zoe', '--role', 'admin', '--scopes', 'a,b', '--expires', '2h', '--json');
  t.equal(create.code, 0, create.err);
  const created = JSON.parse(create.out) as { id: string; key: string; scopes: string[]; expiresAt: string; createdAt: string };
  t.same(created.scopes, ['a', 'b']);
  t.equal(Date.parse(created.expiresAt) - Date.parse(created.createdAt), 2 * 3_600_000, 'options reached the store');

  const apiKey = pc.authenticators().apiKey!;
  const identity = await apiKey.authenticate({ kind: 'apiKey', value: created.key, source: 'authorization' }, { clientIp: '127.0.0.1' });
  t.equal(identity.subject, 'zoe', 'the running gateway accepts the key the CLI created');

  const list = await run(cliCfg, 'keys', 'list', '--json');
  t.equal(list.code, 0, list.err);
  t.same((JSON.parse(list.out) as Array<{ id: string }>).map((k) => k.id), [created.id]);

  const update = await run(cliCfg, 'keys', 'update', created.id, '--role', 'basic', '--scopes', 'c', '--expires', 'never', '--json');
  t.equal(update.code, 0, update.err);
  t.same((({ role, scopes, expiresAt }) => ({ role, scopes, expiresAt }))(JSON.parse(update.out) as Record<string, unknown>), { role: 'basic', scopes: ['c'], expiresAt: null }, 'updated in the store');
  // The gateway learns of changes made by another process within 1 s (the file's notices).
  const within1s = async <T>(read: () => Promise<T>, done: (v: T) => boolean): Promise<T> => {
    const start = performance.now();
    let v = await read();
    while (!done(v) && performance.now() - start < 1_000) {
      await new Promise((r) => setTimeout(r, 20));
      v = await read();
    }
    return v;
  };
  const updated = await within1s(async () => apiKey.authenticate({ kind: 'apiKey', value: created.key, source: 'authorization' }, { clientIp: '127.0.0.1' }), (i) => i.role === 'basic');
  t.same([updated.role, updated.scopes], ['basic', ['c']], 'the running gateway dropped its cached copy within 1 s: the same key has the new grants');
  t.match((await run(cliCfg, 'keys', 'update', created.id, '--role', 'nope')).err, /unknown role/, 'refusals are reported');

  const job = await run(cliCfg, 'keys', 'create', '--subject', 'ci', '--role', 'basic', '--name', 'job-3', '--json');
  const jobKey = JSON.parse(job.out) as { id: string; key: string };
  await apiKey.authenticate({ kind: 'apiKey', value: jobKey.key, source: 'authorization' }, { clientIp: '127.0.0.1' });
  const byName = await run(cliCfg, 'keys', 'revoke', '--name', 'job-3', '--json');
  t.same(JSON.parse(byName.out), { name: 'job-3', revoked: [jobKey.id] }, 'revoked by name in the store');
  const known = await within1s(async () => pc.core.revocation.isRevoked({ revocationId: `key:${jobKey.id}`, subject: 'ci', issuedAt: 0 }), (r) => r === true);
  t.equal(known, true, 'and the running gateway knows within 1 s');

  const rotate = await run(cliCfg, 'keys', 'rotate', created.id, '--grace', '0s', '--json');
  t.equal(rotate.code, 0, rotate.err);
  const next = JSON.parse(rotate.out) as { id: string; rotatedFrom: string };
  t.equal(next.rotatedFrom, created.id);

  const revoke = await run(cliCfg, 'keys', 'revoke', next.id, '--json');
  t.equal(revoke.code, 0, revoke.err);
  t.equal((JSON.parse(revoke.out) as { changed: boolean }).changed, true);
  const missing = await run(cliCfg, 'keys', 'revoke', 'nope');
  t.equal(missing.code, 1);
  t.match(missing.err, /no key with id nope/, 'an unknown id is an error');

  // The gateway learns of changes made by another process within 1 s (SPEC §7).
  let refused: unknown;
  for (const start = performance.now(); refused === undefined && performance.now() - start < 1_000; ) {
    try {
      await apiKey.authenticate({ kind: 'apiKey', value: created.key, source: 'authorization' }, { clientIp: '127.0.0.1' });
      await new Promise((r) => setTimeout(r, 20));
    } catch (err) {
      refused = err;
    }
  }
  t.ok(refused instanceof GatewayError && (refused.code === 'key-revoked' || refused.code === 'key-expired'), `the rotated-away key (zero grace) is refused within 1 s: ${(refused as GatewayError | undefined)?.code}`);

  const bad = join(dir, 'bad.jsonl');
  await writeFile(bad, '{"key":"some-old-key-1234","subject":"x"}\n');
  const imp = await run(cliCfg, 'keys', 'import', '--file', bad);
  t.equal(imp.code, 1);
  t.match(imp.err, new RegExp(`${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:1 "role" is required`), 'import problems are reported line by line');
});
