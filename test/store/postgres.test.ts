import t from 'tap';
import pg from 'pg';
import { openStore } from '../../src/store/open.js';
import { isStoreError } from '../../src/store/errors.js';
import { storeContract } from './contract.js';
import { tempPgDatabase } from './helpers.js';

const url = await tempPgDatabase(t);
if (url === undefined) {
  t.pass('PostgreSQL not available: skipped');
} else {
  await t.test('two stores migrating one empty database at once', async (t) => {
    const other = await tempPgDatabase(t);
    const stores = await Promise.all([1, 2, 3].map(() => openStore(other!, { poolSize: 2 })));
    t.teardown(() => Promise.all(stores.map((s) => s.close())));
    const results = await Promise.all(stores.map((s) => s.migrate()));
    const applied = results.flatMap((r) => r.applied);
    t.same(applied, ['001_initial', '002_key_limits'], 'exactly one of them applied the migrations');
    for (const r of results) t.same(r.current, ['001_initial', '002_key_limits']);
    const c = new pg.Client({ connectionString: other });
    await c.connect();
    const rows = (await c.query('SELECT version, name FROM schema_migrations')).rows;
    await c.end();
    t.same(rows, [{ version: 1, name: '001_initial' }, { version: 2, name: '002_key_limits' }]);
  });

  await storeContract(t, 'postgres', () => openStore(url, { poolSize: 4 }));

  await t.test('an unreachable database fails with store-unavailable', async (t) => {
    const store = await openStore('postgres://postgres@127.0.0.1:1/none', { poolSize: 1 });
    t.teardown(() => store.close());
    for (const [name, op] of [['ping', () => store.ping()], ['getKey', () => store.getKey('x')], ['migrate', () => store.migrate()]] as const) {
      try {
        await op();
        t.fail(`${name} resolved`);
      } catch (err) {
        t.ok(isStoreError(err, 'store-unavailable'), `${name}: store-unavailable (${(err as Error).message})`);
      }
    }
  });

  await t.test('a listener reconnects after its connection is killed and asks for a catch-up', async (t) => {
    const store = await openStore(url, { poolSize: 2 });
    t.teardown(() => store.close());
    const got: string[] = [];
    let reconnected = 0;
    let errors = 0;
    const stop = await store.listen('pcl_reconnect', {
      onMessage: (p) => got.push(p),
      onReconnect: () => reconnected++,
      onError: () => errors++,
    });
    t.teardown(stop);
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    t.teardown(() => admin.end());
    const killed = await admin.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%' AND pid <> pg_backend_pid()`,
    );
    t.equal(killed.rowCount, 1, 'terminated the listening session');
    for (let i = 0; i < 100 && reconnected === 0; i++) await new Promise((r) => setTimeout(r, 50));
    t.equal(reconnected, 1, 'onReconnect called once');
    t.ok(errors >= 1, 'the loss was reported');
    await store.notify('pcl_reconnect', 'after');
    for (let i = 0; i < 50 && got.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    t.same(got, ['after'], 'notifications flow again');
  });
}
