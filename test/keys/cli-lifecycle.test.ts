import t from 'tap';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { main } from '../../src/cli.js';
import type { Io } from '../../src/commands/io.js';
import { tempDir, tempPgDatabase } from '../store/helpers.js';

// `keys update` and `keys revoke --name` from the command line, on the store directly.
// (On the file of a running gateway: cli-shared-file.test.ts; on a running fleet:
// test/fleet/key-lifecycle-*.test.ts.)

interface Run {
  code: number;
  out: string;
  err: string;
}

const url = await tempPgDatabase(t);
if (url === undefined) t.plan(0, 'PostgreSQL unreachable');
else {
  const dir = await tempDir(t, 'pcl-cli-lifecycle-');
  const cfg = join(dir, 'gateway.config.yaml');
  await writeFile(cfg, [
    'upstreams:',
    '  api: { url: "http://127.0.0.1:3000" }',
    'roles: [basic, premium, admin]',
    `store: { url: "${url}", poolSize: 2 }`,
    'routes:',
    '  - match: { path: "/**" }',
    '    upstream: api',
    '',
  ].join('\n'));
  const run = async (...args: string[]): Promise<Run> => {
    let out = '';
    let err = '';
    const io: Io = { out: (s) => void (out += s + '\n'), err: (s) => void (err += s + '\n') };
    const code = await main(['-c', cfg, ...args], io);
    return { code, out, err };
  };
  const json = <T = Record<string, unknown>>(r: Run): T => JSON.parse(r.out) as T;

  await t.test('keys revoke --name [--subject]', async (t) => {
    const a = json(await run('keys', 'create', '--subject', 'job-1', '--role', 'basic', '--name', 'build', '--json'));
    const b = json(await run('keys', 'create', '--subject', 'job-2', '--role', 'basic', '--name', 'build', '--json'));
    const keep = json(await run('keys', 'create', '--subject', 'job-2', '--role', 'basic', '--name', 'deploy', '--json'));
    const one = await run('keys', 'revoke', '--name', 'build', '--subject', 'job-1', '--json');
    t.same(json(one), { name: 'build', subject: 'job-1', revoked: [a.id] });
    const rest = await run('keys', 'revoke', '--name', 'build');
    t.equal(rest.code, 0, rest.err);
    t.match(rest.out, new RegExp(`Revoked 1 key\\(s\\) named build: ${b.id as string}`));
    const list = json<Array<Record<string, unknown>>>(await run('keys', 'list', '--json'));
    t.same([a.id, b.id, keep.id].map((id) => list.find((x) => x.id === id)?.status), ['revoked', 'revoked', 'active']);
  });

  await t.test('keys update', async (t) => {
    const k = json(await run('keys', 'create', '--subject', 'fay', '--role', 'basic', '--scopes', 'x', '--json'));
    const u = await run('keys', 'update', k.id as string, '--role', 'admin', '--scopes', 'x,y', '--expires', '2h', '--json');
    t.equal(u.code, 0, u.err);
    const o = json(u);
    t.same([o.id, o.role, o.scopes, o.status], [k.id, 'admin', ['x', 'y'], 'active']);
    t.ok(Math.abs(Date.parse(o.expiresAt as string) - Date.now() - 7_200_000) < 60_000, 'expires 2h from now');
    t.equal(o.key, undefined, 'never a secret');
    const never = await run('keys', 'update', k.id as string, '--expires', 'never');
    t.match(never.out, /expires never/);
    const cleared = json(await run('keys', 'update', k.id as string, '--scopes', '', '--json'));
    t.same(cleared.scopes, [], 'an empty list clears the scopes');
    const nothing = await run('keys', 'update', k.id as string);
    t.equal(nothing.code, 1);
    t.match(nothing.err, /nothing to update/);
    const badRole = await run('keys', 'update', k.id as string, '--role', 'root');
    t.match(badRole.err, /unknown role "root"/);
    const badExpiry = await run('keys', 'update', k.id as string, '--expires', 'soon');
    t.match(badExpiry.err, /--expires: expected a duration/);
    t.match((await run('keys', 'update', 'nope', '--role', 'admin')).err, /no key with id nope/);
  });
}
