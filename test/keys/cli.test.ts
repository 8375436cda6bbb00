import t from 'tap';
import type { Test } from 'tap';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Command, CommanderError } from 'commander';
import { registerKeysCommand } from '../../src/commands/keys.js';
import { registerMigrateCommand } from '../../src/commands/migrate.js';
import { CommandError, type Io } from '../../src/commands/io.js';
import { parseKey, parseRefreshToken } from '../../src/keys/format.js';
import { openStore } from '../../src/store/open.js';
import { tempDir, tempPgDatabase } from '../store/helpers.js';

interface Run {
  code: number;
  out: string;
  err: string;
}

/** Everything any command wrote to stderr. */
let allErr = '';

/** Runs one command line in-process, the way the root program does. */
async function run(config: string, ...args: string[]): Promise<Run> {
  let out = '';
  let err = '';
  const io: Io = { out: (s) => void (out += s.endsWith('\n') ? s : s + '\n'), err: (s) => void (err += s.endsWith('\n') ? s : s + '\n') };
  const program = new Command('portcullis')
    .option('-c, --config <file>', 'config file', './gateway.config.yaml')
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) });
  registerMigrateCommand(program, io);
  registerKeysCommand(program, io);
  let code = 0;
  try {
    await program.parseAsync(['-c', config, ...args], { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) code = e.exitCode;
    else if (e instanceof CommandError) {
      io.err(`portcullis: ${e.message}`);
      code = e.exitCode;
    } else throw e;
  }
  allErr += err;
  return { code, out, err };
}

async function writeConfig(dir: string, storeUrl: string): Promise<string> {
  const file = join(dir, 'gateway.config.yaml');
  await writeFile(
    file,
    [
      'upstreams:',
      '  api: { url: "http://127.0.0.1:3000" }',
      'roles: [basic, premium, admin]',
      `store: { url: "${storeUrl}", poolSize: 2 }`,
      'apiKeys: { prefix: acme, defaultTtl: 24h }',
      'routes:',
      '  - match: { path: "/**" }',
      '    upstream: api',
      '',
    ].join('\n'),
  );
  return file;
}

function json<T = Record<string, unknown>>(r: Run): T {
  return JSON.parse(r.out) as T;
}

function suite(t: Test, name: string, storeUrl: (dir: string) => string): Promise<void> {
  return t.test(`CLI on ${name}`, async (t) => {
    const dir = await tempDir(t, 'pcl-cli-');
    const cfg = await writeConfig(dir, storeUrl(dir));

    await t.test('migrate', async (t) => {
      const first = await run(cfg, 'migrate', '--json');
      t.equal(first.code, 0, first.err);
      t.same(json(first).applied, ['001_initial', '002_key_limits']);
      const again = await run(cfg, 'migrate');
      t.equal(again.code, 0);
      t.match(again.out, /schema up to date \(002_key_limits\)/);
    });

    const secrets: string[] = [];

    await t.test('keys create --json with every option', async (t) => {
      const r = await run(cfg, 'keys', 'create', '--subject', 'alice', '--role', 'premium', '--scopes', 'films:read, reviews:write', '--name', 'ci',
        '--expires', '2h', '--not-before', '10m', '--allow-ip', '10.0.0.0/8', '--allow-ip', '::1', '--audience', 'api', '--json');
      t.equal(r.code, 0, r.err);
      t.equal(r.err, '', 'nothing on stderr');
      const o = json(r);
      t.equal(parseKey(o.key as string, 'acme')?.id, o.id, 'the key is in the configured prefix and carries its id');
      secrets.push(o.key as string);
      t.same([o.subject, o.role, o.scopes, o.name, o.allowedIps, o.audiences, o.status], ['alice', 'premium', ['films:read', 'reviews:write'], 'ci', ['10.0.0.0/8', '::1'], ['api'], 'not-yet-valid']);
      const created = Date.parse(o.createdAt as string);
      t.equal(Date.parse(o.expiresAt as string) - created, 2 * 3_600_000, '--expires');
      t.equal(Date.parse(o.notBefore as string) - created, 600_000, '--not-before');
      t.equal(o.refreshToken, undefined);
    });

    await t.test('keys create: default expiry from the config, refreshable, human text', async (t) => {
      const r = await run(cfg, 'keys', 'create', '--subject', 'bob', '--role', 'basic', '--refreshable', '--expires', '24h', '--json');
      t.equal(r.code, 0, r.err);
      const o = json(r);
      t.ok(parseRefreshToken(o.refreshToken as string, 'acme'), 'refresh token');
      t.ok(o.refreshExpiresAt);
      secrets.push(o.key as string, o.refreshToken as string);
      const d = json(await run(cfg, 'keys', 'create', '--subject', 'bob', '--role', 'basic', '--json'));
      t.equal(Date.parse(d.expiresAt as string) - Date.parse(d.createdAt as string), 24 * 3_600_000, 'apiKeys.defaultTtl');
      secrets.push(d.key as string);
      const h = await run(cfg, 'keys', 'create', '--subject', 'bob', '--role', 'basic', '--name', 'laptop', '--expires', 'never');
      t.equal(h.code, 0, h.err);
      const key = /^\s+(acme_\S+)$/m.exec(h.out)?.[1];
      t.ok(key && parseKey(key, 'acme'), 'human output shows the key');
      t.equal(h.out.split(key!).length, 2, 'exactly once');
      t.match(h.out, /expires:\s+never/);
      secrets.push(key!);
    });

    await t.test('keys create --replace', async (t) => {
      const a = json(await run(cfg, 'keys', 'create', '--subject', 'carol', '--role', 'basic', '--name', 'deploy', '--json'));
      const b = json(await run(cfg, 'keys', 'create', '--subject', 'carol', '--role', 'basic', '--name', 'deploy', '--replace', '--json'));
      t.same(b.replaced, [a.id]);
      const list = json<Array<Record<string, unknown>>>(await run(cfg, 'keys', 'list', '--subject', 'carol', '--json'));
      t.same(list.map((k) => [k.id, k.status]), [[a.id, 'revoked'], [b.id, 'active']]);
    });

    await t.test('keys create refuses bad input', async (t) => {
      const cases: Array<[string[], RegExp]> = [
        [['--subject', 'x', '--role', 'root'], /unknown role "root"/],
        [['--subject', 'x', '--role', 'basic', '--expires', 'soon'], /--expires: expected a duration/],
        [['--subject', 'x', '--role', 'basic', '--allow-ip', '10.0.0.0/99'], /not an IP address or CIDR/],
        [['--role', 'basic'], /required option '--subject <subject>'/],
      ];
      for (const [args, re] of cases) {
        const r = await run(cfg, 'keys', 'create', ...args, '--json');
        t.not(r.code, 0, `${args.join(' ')}: non-zero exit`);
        t.match(r.err, re);
        t.equal(r.out, '', 'nothing on stdout');
      }
    });

    await t.test('keys list never shows a secret', async (t) => {
      const r = await run(cfg, 'keys', 'list', '--json');
      t.equal(r.code, 0, r.err);
      const list = json<Array<Record<string, unknown>>>(r);
      t.ok(list.length >= 5);
      t.ok(list.every((k) => !('key' in k) && !('refreshToken' in k)), 'no key field');
      const text = await run(cfg, 'keys', 'list');
      t.match(text.out, /^ID\s+NAME\s+SUBJECT\s+ROLE\s+SCOPES\s+CREATED\s+EXPIRES\s+LAST USED\s+STATUS/);
      for (const s of secrets) {
        const p = parseKey(s, 'acme') ?? parseRefreshToken(s, 'acme');
        for (const out of [r.out, text.out]) t.notOk(out.includes(p!.secret), 'no secret in list output');
      }
      t.equal(json<unknown[]>(await run(cfg, 'keys', 'list', '--subject', 'alice', '--json')).length, 1, '--subject');
      t.match((await run(cfg, 'keys', 'list', '--subject', 'nobody')).out, /No keys\./);
    });

    await t.test('keys revoke ID / --subject', async (t) => {
      const k = json(await run(cfg, 'keys', 'create', '--subject', 'dave', '--role', 'basic', '--json'));
      const k2 = json(await run(cfg, 'keys', 'create', '--subject', 'dave', '--role', 'basic', '--json'));
      const r = await run(cfg, 'keys', 'revoke', k.id as string, '--json');
      t.equal(r.code, 0, r.err);
      t.same([json(r).id, json(r).changed], [k.id, true]);
      const again = await run(cfg, 'keys', 'revoke', k.id as string);
      t.match(again.out, /already revoked/);
      const missing = await run(cfg, 'keys', 'revoke', 'doesnotexist');
      t.equal(missing.code, 1);
      t.match(missing.err, /no key with id doesnotexist/);
      const subj = await run(cfg, 'keys', 'revoke', '--subject', 'dave', '--json');
      t.same(json(subj), { subject: 'dave', revoked: [k2.id] });
      const both = await run(cfg, 'keys', 'revoke', k.id as string, '--subject', 'dave');
      t.equal(both.code, 1);
      t.match(both.err, /give a key ID, --subject S, or --name N/);
      t.equal((await run(cfg, 'keys', 'revoke')).code, 1, 'neither');
      t.equal((await run(cfg, 'keys', 'revoke', k.id as string, '--name', 'x')).code, 1, 'an ID and a name');
    });

    await t.test('keys rotate', async (t) => {
      const k = json(await run(cfg, 'keys', 'create', '--subject', 'erin', '--role', 'admin', '--scopes', 'x', '--json'));
      const r = await run(cfg, 'keys', 'rotate', k.id as string, '--grace', '30m', '--json');
      t.equal(r.code, 0, r.err);
      const o = json(r);
      t.ok(parseKey(o.key as string, 'acme'));
      t.same([o.rotatedFrom, o.subject, o.role, o.scopes], [k.id, 'erin', 'admin', ['x']]);
      t.equal(Date.parse(o.graceUntil as string) - Date.parse(o.createdAt as string), 1_800_000);
      const list = json<Array<Record<string, unknown>>>(await run(cfg, 'keys', 'list', '--subject', 'erin', '--json'));
      t.same(list.find((x) => x.id === k.id)?.status, 'rotating');
      const twice = await run(cfg, 'keys', 'rotate', k.id as string);
      t.equal(twice.code, 1);
      t.match(twice.err, /only a working key can be rotated/);
      const human = await run(cfg, 'keys', 'rotate', o.id as string);
      t.match(human.out, /keeps working until/);
    });

    await t.test('keys import', async (t) => {
      const good = join(dir, 'good.jsonl');
      await writeFile(good, [
        JSON.stringify({ key: 'old-system-key-000001', subject: 'fay', role: 'basic', scopes: ['a'] }),
        JSON.stringify({ sha256: 'b'.repeat(64), subject: 'fay', role: 'premium', name: 'legacy' }),
      ].join('\n') + '\n');
      const r = await run(cfg, 'keys', 'import', '--file', good, '--json');
      t.equal(r.code, 0, r.err);
      t.equal(json(r).imported, 2);
      const bad = join(dir, 'bad.jsonl');
      await writeFile(bad, [
        JSON.stringify({ key: 'another-old-key-0002', subject: 'gus', role: 'basic' }),
        '{oops',
        JSON.stringify({ key: 'another-old-key-0003', role: 'basic' }),
      ].join('\n'));
      const b = await run(cfg, 'keys', 'import', '--file', bad);
      t.equal(b.code, 1);
      t.match(b.err, new RegExp(`^${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:2 invalid JSON`, 'm'));
      t.match(b.err, new RegExp(`${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:3 "subject" must be a non-empty string`));
      t.match(b.err, /nothing imported/);
      const bj = await run(cfg, 'keys', 'import', '--file', bad, '--json');
      t.equal(bj.code, 1);
      t.equal(json<{ errors: string[] }>(bj).errors.length, 2);
      t.equal(json<unknown[]>(await run(cfg, 'keys', 'list', '--subject', 'gus', '--json')).length, 0, 'nothing imported');
      const missing = await run(cfg, 'keys', 'import', '--file', join(dir, 'nope.jsonl'));
      t.equal(missing.code, 1);
      t.match(missing.err, /no such file/);
    });

    await t.test('no secret ever reached stderr', async (t) => {
      t.ok(secrets.length >= 5);
      for (const secret of secrets) t.notOk(allErr.includes(secret), 'not on stderr');
    });
  }).then(() => undefined);
}

await suite(t, 'SQLite (file)', (dir) => `sqlite://${join(dir, 'data', 'portcullis.db')}`);

await t.test('a file another process has open: the CLI shares it', async (t) => {
  const dir = await tempDir(t, 'pcl-cli-shared-');
  const file = join(dir, 'data', 'portcullis.db');
  const cfg = await writeConfig(dir, `sqlite://${file}`);
  const holder = await openStore(`sqlite://${file}`, { migrate: true });
  t.teardown(() => holder.close());
  const created = await run(cfg, 'keys', 'create', '--subject', 'shared', '--role', 'basic', '--json');
  t.equal(created.code, 0, created.err);
  const id = (JSON.parse(created.out) as { id: string }).id;
  t.equal((await holder.getKey(id))?.subject, 'shared', 'the holder reads the key the CLI wrote');
  t.equal((await run(cfg, 'keys', 'revoke', id)).code, 0);
  t.not((await holder.getKey(id))?.revokedAt, null, 'and its revocation');
  const m = await run(cfg, 'migrate');
  t.equal(m.code, 0, m.err);
});

await t.test('a pglite:// store URL: located error naming the sqlite:// URL to use', async (t) => {
  const dir = await tempDir(t, 'pcl-cli-pglite-');
  const cfg = await writeConfig(dir, 'pglite://./data/portcullis');
  for (const args of [['keys', 'list'], ['migrate']]) {
    const r = await run(cfg, ...args);
    t.equal(r.code, 1, `${args.join(' ')} exits 1`);
    t.match(r.err, new RegExp(`${cfg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+:\\d+ store\\.url: pglite:// is no longer supported.*sqlite://\\./data/portcullis/portcullis\\.db`));
  }
});

await t.test('an invalid config is reported as FILE:LINE:COL and exits 1', async (t) => {
  const dir = await tempDir(t, 'pcl-cli-cfg-');
  const file = join(dir, 'bad.yaml');
  await writeFile(file, 'upstreams: {}\nroutes: []\nbogus: 1\n');
  const r = await run(file, 'keys', 'list');
  t.equal(r.code, 1);
  t.match(r.err, new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+:\\d+ `));
  const u = await run(await writeConfig(dir, 'mysql://127.0.0.1/db'), 'migrate');
  t.equal(u.code, 1, 'a store URL with an unknown scheme');
  t.match(u.err, /unsupported store URL scheme "mysql:"/);
});

const url = await tempPgDatabase(t);
if (url !== undefined) await suite(t, 'PostgreSQL', () => url);
