import t from 'tap';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { REDIS_URL, redisPrefix, serviceSkip, tempDatabase } from '../helpers/services.js';
import { startUpstream } from '../helpers/upstream.js';
import { fleetConfig, startFleet, stopFleet } from './helpers.js';
import { checkLateInstance, propagationSuite, summary, type AnnouncementLog } from './propagation.js';

// Three gateway processes share one PostgreSQL database and one Redis. Credentials are
// revoked through the CLI (another process) while every instance has them cached; every
// instance must refuse them within 100 ms of the CLI returning.

const skip = (await serviceSkip('postgres')) || (await serviceSkip('redis'));
if (skip) t.plan(0, `skipping: ${skip}`);
else {
  await t.test('revocation reaches three instances through Redis', async (t) => {
    const db = await tempDatabase();
    t.teardown(() => db.drop());
    const rp = redisPrefix();
    t.teardown(() => rp.clean());
    const up = await startUpstream();
    t.teardown(() => up.close());
    const dir = await mkdtemp(join(tmpdir(), 'pcl-fleet-'));
    t.teardown(() => rm(dir, { recursive: true, force: true }));

    const yaml = fleetConfig({ store: db.url, upstream: up.url, redis: REDIS_URL, keyPrefix: rp.prefix });
    const configFile = join(dir, 'gateway.config.yaml');
    await writeFile(configFile, yaml);

    // The invalidation channel, as any instance hears it: the reference point of the figures.
    const announcements: AnnouncementLog = { seen: [] };
    const sub = new Redis(REDIS_URL);
    t.teardown(() => void sub.disconnect());
    sub.on('message', (channel: string) => {
      if (channel === `${rp.prefix}invalidate`) announcements.seen.push(performance.now());
    });
    await sub.subscribe(`${rp.prefix}invalidate`);

    const fleet = await startFleet(3, yaml);
    t.teardown(() => stopFleet(fleet));
    t.equal(new Set(fleet.map((i) => i.gw.port)).size, 3, 'three instances on their own ports');

    const { figures, revoked, working } = await propagationSuite(t, { backend: 'redis', fleet, configFile, announcements });
    t.comment(summary('redis: first 401 after the CLI exited', figures.flatMap((m) => m.afterExit)));
    t.comment(summary('redis: first 401 after the announcement', figures.flatMap((m) => m.afterAnnouncement)));

    // An instance started after every revocation reads them from the shared Redis.
    const late = await startFleet(1, yaml);
    t.teardown(() => stopFleet(late));
    await checkLateInstance(t, late[0]!, revoked, working);

    // The markers live under this run's prefix only.
    const r = new Redis(REDIS_URL);
    const markers = await r.keys(`${rp.prefix}r:*`);
    const subjects = await r.keys(`${rp.prefix}s:*`);
    await r.quit();
    t.equal(markers.length, 2, 'one marker for the key, one for the jti');
    t.same(subjects.sort(), [`${rp.prefix}s:k:bob`, `${rp.prefix}s:t:dave`], 'subject timestamps, scoped by kind');
  });
}
