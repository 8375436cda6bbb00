import t from 'tap';
import { spawnSync } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { tempPgDatabase } from './helpers.js';
import { REDIS_URL, serviceAvailable } from '../revocation/helpers.js';

// A gateway loads the modules of the store and revocation backends its config names, not
// the others: the `pg` driver and ioredis cost memory in every process that merely imports
// them. Each case runs in a fresh process that records every
// module it resolves.

const src = (p: string): string => pathToFileURL(new URL(`../../src/${p}`, import.meta.url).pathname).href;

function loadedModules(body: string): string[] {
  const script = `
    import { registerHooks } from 'node:module';
    const seen = [];
    registerHooks({ resolve(spec, ctx, next) { const r = next(spec, ctx); seen.push(r.url); return r; } });
    const { openStore } = await import(${JSON.stringify(src('store/open.js'))});
    const { openRevocation } = await import(${JSON.stringify(src('revocation/open.js'))});
    const logger = { info() {}, warn() {}, error() {} };
    ${body}
    process.stdout.write(JSON.stringify(seen));
    process.exit(0);
  `;
  const r = spawnSync(process.execPath, [...process.execArgv, '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`probe failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout) as string[];
}

const has = (mods: string[], re: RegExp): boolean => mods.some((u) => re.test(u));
const SQLITE = /\/store\/sqlite\.[jt]s$/;
const PG = /\/node_modules\/pg\/|\/store\/postgres\.[jt]s$/;
const IOREDIS = /\/node_modules\/ioredis\/|\/revocation\/redis\.[jt]s$/;
const PG_NOTIFY = /\/revocation\/pg-notify\.[jt]s$/;

const url = await tempPgDatabase(t);
const redisMissing = await serviceAvailable('redis');
if (redisMissing !== undefined && process.env.CI === 'true') t.fail(`Redis is required in CI: ${redisMissing}`);

t.test('PostgreSQL store, no Redis: neither the SQLite store nor ioredis is loaded', { skip: url === undefined && 'PostgreSQL unreachable' }, async (t) => {
  const mods = loadedModules(`
    const store = await openStore(${JSON.stringify(url)}, { migrate: true });
    const source = { loadActive: async () => ({ ids: [], subjects: [] }), changedSince: async () => ({ ids: [], subjects: [] }) };
    const rev = await openRevocation({ config: { redis: '', onError: 'deny', keyPrefix: 'x:', timeout: 1000 }, databaseUrl: ${JSON.stringify(url)}, source, logger });
    await rev.close();
    await store.close();
  `);
  t.ok(has(mods, PG_NOTIFY), 'the PostgreSQL revocation backend is loaded (the probe sees dynamic imports)');
  t.notOk(has(mods, SQLITE), 'no SQLite store');
  t.notOk(has(mods, IOREDIS), 'no ioredis');
});

t.test('embedded store, no Redis: SQLite, and neither pg, ioredis nor the PostgreSQL listener', async (t) => {
  const mods = loadedModules(`
    const store = await openStore('sqlite://memory', { migrate: true });
    const rev = await openRevocation({ config: { redis: '', onError: 'deny', keyPrefix: 'x:', timeout: 1000 }, databaseUrl: 'sqlite://memory', logger });
    await rev.close();
    await store.close();
  `);
  t.ok(has(mods, SQLITE), 'the SQLite store is loaded');
  t.notOk(has(mods, PG), 'no pg driver');
  t.notOk(has(mods, IOREDIS), 'no ioredis');
  t.notOk(has(mods, PG_NOTIFY), 'no PostgreSQL revocation listener');
});

t.test('Redis configured: ioredis is loaded', { skip: redisMissing ?? false }, async (t) => {
  const mods = loadedModules(`
    const rev = await openRevocation({ config: { redis: ${JSON.stringify(REDIS_URL)}, onError: 'deny', keyPrefix: 'pcl-lazy-' + process.pid + ':', timeout: 1000 }, databaseUrl: 'sqlite://memory', logger });
    await rev.close();
  `);
  t.ok(has(mods, IOREDIS), 'ioredis is loaded');
  t.notOk(has(mods, SQLITE), 'no SQLite store: none was opened');
});
