import t from 'tap';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { REVOCATION_CHANNEL } from '../../src/store/types.js';
import { serviceSkip, tempDatabase } from '../helpers/services.js';
import { startUpstream } from '../helpers/upstream.js';
import { cli, cliJson, fleetConfig, startFleet, stopFleet } from './helpers.js';
import { checkLateInstance, propagationSuite, summary, type AnnouncementLog } from './propagation.js';

// The same fleet without Redis: three gateway processes on one PostgreSQL database learn of
// revocations through LISTEN/NOTIFY and keep them in memory. Every instance must refuse a
// credential revoked through the CLI within 100 ms of the CLI returning.

const skip = await serviceSkip('postgres');
if (skip) t.plan(0, `skipping: ${skip}`);
else {
  await t.test('revocation reaches three instances through LISTEN/NOTIFY', async (t) => {
    const db = await tempDatabase();
    t.teardown(() => db.drop());
    const up = await startUpstream();
    t.teardown(() => up.close());
    const dir = await mkdtemp(join(tmpdir(), 'pcl-fleet-'));
    t.teardown(() => rm(dir, { recursive: true, force: true }));

    const yaml = fleetConfig({ store: db.url, upstream: up.url });
    t.notMatch(yaml, /redis: "[^"]/, 'no Redis configured');
    const configFile = join(dir, 'gateway.config.yaml');
    await writeFile(configFile, yaml);

    // The channel as any instance hears it (the database is this file's own, so only its
    // revocations arrive): the reference point of the figures.
    const announcements: AnnouncementLog = { seen: [] };
    const listener = new pg.Client({ connectionString: db.url });
    await listener.connect();
    t.teardown(() => listener.end());
    listener.on('notification', (n) => {
      if (n.channel === REVOCATION_CHANNEL) announcements.seen.push(performance.now());
    });
    await listener.query(`LISTEN ${REVOCATION_CHANNEL}`);

    const fleet = await startFleet(3, yaml);
    t.teardown(() => stopFleet(fleet));

    // Every instance listens on the database before the first revocation is made.
    const listening = async () => {
      const r = await listener.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'portcullis-revocation'");
      return r.rows[0]!.n;
    };
    for (let i = 0; i < 100 && (await listening()) < 3; i++) await new Promise((r) => setTimeout(r, 50));
    t.equal(await listening(), 3, 'three instances hold a LISTEN connection');

    const { figures, revoked, working } = await propagationSuite(t, { backend: 'LISTEN/NOTIFY', fleet, configFile, announcements });
    t.comment(summary('LISTEN/NOTIFY: first 401 after the CLI exited', figures.flatMap((m) => m.afterExit)));
    t.comment(summary('LISTEN/NOTIFY: first 401 after the announcement', figures.flatMap((m) => m.afterAnnouncement)));

    // Durable: an instance started after every revocation loads them from the store.
    const late = await startFleet(1, yaml);
    t.teardown(() => stopFleet(late));
    await checkLateInstance(t, late[0]!, revoked, working);
    const list = cliJson<Array<{ status: string }>>(await cli(configFile, 'keys', 'list', '--subject', 'bob', '--json'));
    t.same(list.map((k) => k.status), ['revoked', 'revoked'], 'keys list shows both of bob\'s keys revoked');
  });
}
