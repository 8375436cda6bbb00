import t from 'tap';
import type { RevocationConfig } from '../../src/config/schema.js';
import { MemoryRevocationStore } from '../../src/revocation/memory.js';
import { openRevocation, revocationBackend } from '../../src/revocation/open.js';
import { PgNotifyRevocationStore } from '../../src/revocation/pg-notify.js';
import { RedisRevocationStore } from '../../src/revocation/redis.js';
import { CI, createDatabase, randomTag, recordingLogger, REDIS_URL, serviceAvailable, TableSource } from './helpers.js';

const config = (redis: string, extra: Partial<RevocationConfig> = {}): RevocationConfig => ({
  redis, onError: 'deny', keyPrefix: `pcl-t-${randomTag()}:`, timeout: 1_000, externalKeys: [], ...extra,
});

const cases: Array<[string, string | undefined, ReturnType<typeof revocationBackend>]> = [
  ['redis://127.0.0.1:6379', 'postgres://db/x', 'redis'],
  ['rediss://cache:6380', 'sqlite://./data/p.db', 'redis'],
  ['redis://h', undefined, 'redis'],
  ['', 'postgres://db/x', 'pg-notify'],
  ['   ', 'postgresql://db/x', 'pg-notify'],
  ['', 'POSTGRES://db/x', 'pg-notify'],
  ['', 'sqlite://./data/portcullis.db', 'memory'],
  ['', 'sqlite://memory', 'memory'],
  ['', undefined, 'memory'],
];
for (const [redis, url, want] of cases) {
  t.equal(revocationBackend(config(redis), url), want, `redis=${JSON.stringify(redis)} store=${url ?? '(none)'} → ${want}`);
}

await t.test('PostgreSQL without Redis needs a source', async (t) => {
  await t.rejects(openRevocation({ config: config(''), databaseUrl: 'postgres://127.0.0.1:1/x', logger: recordingLogger() }), TypeError);
});

const pgMissing = await serviceAvailable('postgres');
const redisMissing = await serviceAvailable('redis');
if ((pgMissing ?? redisMissing) !== undefined && CI) t.fail(`${pgMissing ?? ''} ${redisMissing ?? ''}`);

await t.test('opens each backend', { skip: pgMissing ?? redisMissing ?? false }, async (t) => {
  const db = await createDatabase();
  t.teardown(() => db.drop());
  const source = new TableSource(db.url);
  t.teardown(() => source.close());
  await source.migrate();
  await source.recordId('key:durable');
  const logger = recordingLogger();
  const probe = { revocationId: 'key:durable', subject: 's', issuedAt: 0 };

  const mem = await openRevocation({ config: config(''), databaseUrl: 'sqlite://memory', source, logger });
  t.teardown(() => mem.close());
  t.type(mem, MemoryRevocationStore);
  t.equal(mem.isRevoked(probe), true, 'in-process set is loaded from the source before it is returned');

  // onError: allow would serve a set not loaded yet: it must be loaded when opening returns,
  // before any request is judged on it (a gateway starting, a worker replaced).
  const pgs = await openRevocation({ config: config('', { onError: 'allow' }), databaseUrl: db.url, source, logger, channel: `pcl_rev_${randomTag()}` });
  t.teardown(() => pgs.close());
  t.type(pgs, PgNotifyRevocationStore);
  t.equal(pgs.ready(), true, 'pg-notify has loaded the source when opening returns');
  t.equal(pgs.isRevoked(probe), true, 'and knows the durable revocation at once');

  const cfg = config(REDIS_URL);
  const red = await openRevocation({ config: cfg, databaseUrl: db.url, source, logger });
  t.teardown(() => red.close());
  t.type(red, RedisRevocationStore);
  t.ok(await red.waitReady(5_000));
  t.equal(await red.isRevoked(probe), true, 'Redis is seeded from the source under the configured prefix');
  const { Redis } = await import('ioredis');
  const r = new Redis(REDIS_URL);
  t.teardown(async () => {
    const keys = await r.keys(`${cfg.keyPrefix}*`);
    if (keys.length) await r.del(...keys);
    r.disconnect();
  });
  t.equal(await r.get(`${cfg.keyPrefix}r:key:durable`), '1');
});
