import t from 'tap';
import { openPostgresStore } from '../../src/store/postgres.js';
import { isStoreError } from '../../src/store/errors.js';
import { serviceSkip, tempDatabase } from '../helpers/services.js';
import { startRelay } from '../helpers/relay.js';

// A PostgreSQL server that stops answering on a connection the pool already holds: the
// server-side statement timeout can never fire, so the client must give up by itself.

const skip = await serviceSkip('postgres');
if (skip) {
  t.plan(0, `skipping: ${skip}`);
} else {
  await t.test('a query on a pooled connection to a hung server fails within its bound', async (t) => {
    const db = await tempDatabase();
    t.teardown(() => db.drop());
    const target = new URL(db.url);
    const relay = await startRelay({ host: target.hostname, port: Number(target.port || 5432) });
    t.teardown(() => relay.close());
    const url = new URL(db.url);
    url.host = relay.address;
    const STATEMENT_MS = 500;
    const store = openPostgresStore(url.toString(), { poolSize: 1, connectTimeout: 1_000, statementTimeout: STATEMENT_MS });
    t.teardown(() => store.close());
    await store.migrate();
    await store.ping();
    t.equal(relay.stats.open > 0, true, 'the pool holds an open connection');

    relay.pause();
    const t0 = performance.now();
    const outcome = await Promise.race([
      store.getKey('AAAAAAAAAAAAAA').then(() => 'answered', (err: unknown) => err),
      new Promise((r) => setTimeout(() => r('still waiting after 10 s'), 10_000)),
    ]);
    const ms = performance.now() - t0;
    t.ok(isStoreError(outcome, 'store-unavailable'), `fails as store-unavailable (got ${String(outcome)})`);
    t.ok(ms < STATEMENT_MS + 3_000, `within the statement timeout plus the client margin (${Math.round(ms)} ms)`);

    // The timed-out connection is not handed out again: after the server is back, queries work.
    await relay.restore();
    t.equal(await store.getKey('AAAAAAAAAAAAAA'), undefined, 'the store answers again after restore');
  });
}
