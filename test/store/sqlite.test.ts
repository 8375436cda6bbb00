import t from 'tap';
import { spawn } from 'node:child_process';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { openStore, parseStoreUrl } from '../../src/store/open.js';
import { loadMigrations } from '../../src/store/migrate.js';
import { REVOCATION_CHANNEL } from '../../src/store/types.js';
import { storeContract, newKey } from './contract.js';
import { tempDir } from './helpers.js';

t.test('parseStoreUrl', async (t) => {
  const cases: Array<[string, unknown]> = [
    ['postgres://u@h:5432/db', { kind: 'postgres', url: 'postgres://u@h:5432/db' }],
    ['postgresql://h/db', { kind: 'postgres', url: 'postgresql://h/db' }],
    ['sqlite://memory', { kind: 'sqlite', file: undefined }],
    ['sqlite://./data/x.db', { kind: 'sqlite', file: '/base/data/x.db' }],
    ['sqlite://x.db', { kind: 'sqlite', file: '/base/x.db' }],
    ['sqlite:///var/lib/p.db', { kind: 'sqlite', file: '/var/lib/p.db' }],
  ];
  for (const [url, want] of cases) t.same(parseStoreUrl(url, '/base'), want, url);
  for (const bad of ['mysql://h/db', 'sqlite://', 'sqlite://./data/', 'postgres://', '', './data']) {
    t.throws(() => parseStoreUrl(bad, '/base'), { code: 'store-url-invalid' }, `rejects ${JSON.stringify(bad)}`);
  }
  // The old embedded store's URLs say what to write now.
  t.throws(() => parseStoreUrl('pglite://./data/portcullis', '/base'), { code: 'store-url-invalid', message: /sqlite:\/\/\.\/data\/portcullis\/portcullis\.db/ });
  t.throws(() => parseStoreUrl('pglite://memory', '/base'), { code: 'store-url-invalid', message: /sqlite:\/\/memory/ });
  await t.rejects(openStore('redis://localhost'), { code: 'store-url-invalid' });
});

t.test('the dialects are versioned together: the same migrations by version and name', async (t) => {
  const pg = await loadMigrations('postgres');
  const lite = await loadMigrations('sqlite');
  t.ok(pg.length > 0);
  t.same(lite.map((m) => m.name), pg.map((m) => m.name));
});

await storeContract(t, 'sqlite memory', () => openStore('sqlite://memory'));

const root = await tempDir(t, 'pcl-sqlite-');
let n = 0;
await storeContract(t, 'sqlite file', () => openStore(`sqlite://${join(root, `c${n++}.db`)}`));

await t.test('a file persists across close and reopen, readable by its owner only', async (t) => {
  const file = join(root, 'persist', 'keys.db');
  const first = await openStore(`sqlite://${file}`, { migrate: true });
  const k = newKey({ scopes: ['x'] });
  await first.insertKey(k);
  await first.setKv('signing', 'abc', 1);
  await first.close();
  t.equal(statSync(file).mode & 0o777, 0o600, 'file mode 0600');
  t.equal(statSync(join(root, 'persist')).mode & 0o777, 0o700, 'directory mode 0700');
  const again = await openStore(`sqlite://${file}`);
  t.teardown(() => again.close());
  t.same((await again.migrate()).applied, [], 'already migrated');
  t.same((await again.getKey(k.id))?.scopes, ['x']);
  t.equal(await again.getKv('signing'), 'abc');
});

// Another process on the same file: migrating at once, writing at once, and its
// revocations reaching this process's listener.
function child(file: string, body: string): Promise<string> {
  const src = new URL('../../src/store/open.js', import.meta.url).href;
  const script = `
    const { openStore } = await import(${JSON.stringify(src)});
    const store = await openStore(${JSON.stringify(`sqlite://${file}`)});
    ${body}
    await store.close();
  `;
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [...process.execArgv, '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`child exited ${code}: ${err}`))));
  });
}

await t.test('processes share one file: concurrent migrations, writers and notices', async (t) => {
  const file = join(root, 'shared.db');
  const outs = await Promise.all([1, 2, 3].map(() => child(file, 'process.stdout.write(JSON.stringify((await store.migrate()).applied));')));
  t.same(outs.flatMap((o) => JSON.parse(o) as string[]), ['001_initial', '002_key_limits'], 'exactly one process applied the migrations');

  const store = await openStore(`sqlite://${file}`);
  t.teardown(() => store.close());
  const heard: string[] = [];
  const stop = await store.listen(REVOCATION_CHANNEL, { onMessage: (p) => heard.push(p) });
  t.teardown(stop);
  // Two processes insert 300 keys each while this one revokes: no write is lost to a busy file.
  const writer = (tag: string) =>
    child(file, `
      const { newKey } = await import(${JSON.stringify(new URL('./contract.js', import.meta.url).href)});
      for (let i = 0; i < 300; i++) await store.insertKey(newKey({ subject: ${JSON.stringify(tag)} }));
      const k = newKey({ subject: ${JSON.stringify(tag)} });
      await store.insertKey(k);
      await store.revokeKey(k.id, Date.now());
    `);
  const mine = newKey({ subject: 'here' });
  await store.insertKey(mine);
  await Promise.all([writer('a'), writer('b'), store.revokeKey(mine.id, Date.now())]);
  t.equal((await store.listKeys({ subject: 'a' })).length, 301);
  t.equal((await store.listKeys({ subject: 'b' })).length, 301);
  for (let i = 0; i < 50 && heard.length < 3; i++) await new Promise((r) => setTimeout(r, 20));
  const subjects = heard.map((p) => (JSON.parse(p) as { subject: string }).subject).sort();
  t.same(subjects, ['a', 'b', 'here'], 'every revocation notice, from every process, heard here');
});

await t.test('another process holding the write lock: reads go on, writes wait without blocking the event loop', async (t) => {
  const file = join(root, 'locked.db');
  const store = await openStore(`sqlite://${file}`, { migrate: true });
  t.teardown(() => store.close());
  const k = newKey();
  await store.insertKey(k);

  // The other process takes the write lock and keeps it until told to commit.
  const holder = spawn(process.execPath, ['--input-type=module', '-e', `
    import { DatabaseSync } from 'node:sqlite';
    const db = new DatabaseSync(${JSON.stringify(file)});
    db.exec('BEGIN IMMEDIATE');
    db.exec("INSERT INTO kv (name, value, updated_at) VALUES ('holder', 'x', 1)");
    process.stdout.write('locked\\n');
    process.stdin.once('data', () => { db.exec('COMMIT'); db.close(); process.stdout.write('done\\n'); process.exit(0); });
  `], { stdio: ['pipe', 'pipe', 'inherit'] });
  t.teardown(() => { holder.kill(); });
  const lines: string[] = [];
  const saw = (line: string) => new Promise<void>((resolve) => {
    const check = () => (lines.includes(line) ? resolve() : setTimeout(check, 5));
    check();
  });
  holder.stdout.on('data', (d: Buffer) => lines.push(...d.toString().split('\n').filter(Boolean)));
  await saw('locked');

  // The longest the event loop went without running a timer while the write waited: a
  // synchronous wait for the lock would show up here as seconds.
  let last = performance.now();
  let longestStall = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    longestStall = Math.max(longestStall, now - last);
    last = now;
  }, 5);
  t.teardown(() => clearInterval(timer));
  let written = false;
  const write = store.touchLastUsed(new Map([[k.id, 12345]])).then(() => (written = true));
  t.equal((await store.getKey(k.id))?.id, k.id, 'a read is answered while the lock is held');
  await new Promise((r) => setTimeout(r, 300));
  t.notOk(written, 'the write waits for the lock');
  t.ok(longestStall < 1_000, `the event loop kept turning while it waited (longest stall ${longestStall.toFixed(0)} ms)`);
  t.notOk(lines.includes('done'), 'the other process still held the lock meanwhile');
  holder.stdin.write('commit\n');
  await write;
  t.equal((await store.getKey(k.id))?.lastUsedAt, 12345, 'the write landed once the lock was released');
  t.equal(await store.getKv('holder'), 'x', "and the other process's write is there too");
});
