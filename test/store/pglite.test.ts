import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openStore, parseStoreUrl } from '../../src/store/open.js';
import { isStoreError } from '../../src/store/errors.js';
import { LOCK_FILE } from '../../src/store/lock.js';
import { storeContract, newKey } from './contract.js';
import { tempDir } from './helpers.js';

t.test('parseStoreUrl', async (t) => {
  const cases: Array<[string, unknown]> = [
    ['postgres://u@h:5432/db', { kind: 'postgres', url: 'postgres://u@h:5432/db' }],
    ['postgresql://h/db', { kind: 'postgres', url: 'postgresql://h/db' }],
    ['pglite://memory', { kind: 'pglite', dir: undefined }],
    ['pglite://./data/x', { kind: 'pglite', dir: '/base/data/x' }],
    ['pglite://data', { kind: 'pglite', dir: '/base/data' }],
    ['pglite:///var/lib/p', { kind: 'pglite', dir: '/var/lib/p' }],
  ];
  for (const [url, want] of cases) t.same(parseStoreUrl(url, '/base'), want, url);
  for (const bad of ['mysql://h/db', 'sqlite:///x', 'pglite://', 'postgres://', '', './data']) {
    t.throws(() => parseStoreUrl(bad, '/base'), { code: 'store-url-invalid' }, `rejects ${JSON.stringify(bad)}`);
  }
  await t.rejects(openStore('redis://localhost'), { code: 'store-url-invalid' });
});

await storeContract(t, 'pglite memory', () => openStore('pglite://memory'));

const root = await tempDir(t, 'pcl-pglite-');
let n = 0;
await storeContract(t, 'pglite dir', () => openStore(`pglite://${join(root, `c${n++}`)}`));

await t.test('a data directory persists across close and reopen', async (t) => {
  const dir = join(root, 'persist');
  const first = await openStore(`pglite://${dir}`, { migrate: true });
  const k = newKey({ scopes: ['x'] });
  await first.insertKey(k);
  await first.setKv('signing', 'abc', 1);
  await first.close();
  t.notOk(existsSync(join(dir, LOCK_FILE)), 'lock released on close');
  const again = await openStore(`pglite://${dir}`);
  t.teardown(() => again.close());
  const m = await again.migrate();
  t.same(m.applied, [], 'already migrated');
  t.same((await again.getKey(k.id))?.scopes, ['x']);
  t.equal(await again.getKv('signing'), 'abc');
});

await t.test('data directory lock', async (t) => {
  const dir = join(root, 'locked');
  const store = await openStore(`pglite://${dir}`);
  t.equal(readFileSync(join(dir, LOCK_FILE), 'utf8').trim(), String(process.pid), 'pid in the lock file');
  await t.rejects(openStore(`pglite://${dir}`), { code: 'store-locked' }, 'second open in this process');
  await store.close();

  // A live process that is not us holds it.
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
  t.teardown(() => { child.kill(); });
  writeFileSync(join(dir, LOCK_FILE), `${child.pid}\n`);
  try {
    await openStore(`pglite://${dir}`);
    t.fail('opened a directory held by a live process');
  } catch (err) {
    t.ok(isStoreError(err, 'store-locked'), 'store-locked');
    t.match((err as Error).message, String(child.pid), 'names the holder');
  }
  t.equal(readFileSync(join(dir, LOCK_FILE), 'utf8').trim(), String(child.pid), 'the live lock is left alone');

  // The holder dies: its lock is stale and reclaimed.
  const exited = new Promise((r) => child.once('exit', r));
  child.kill();
  await exited;
  const reclaimed = await openStore(`pglite://${dir}`);
  t.equal(readFileSync(join(dir, LOCK_FILE), 'utf8').trim(), String(process.pid), 'stale lock reclaimed');
  await reclaimed.close();

  writeFileSync(join(dir, LOCK_FILE), 'garbage\n');
  const garbage = await openStore(`pglite://${dir}`);
  t.pass('an unreadable lock is treated as stale');
  await garbage.close();
});
