import { Socket } from 'node:net';
import t from 'tap';
import { Redis } from 'ioredis';
import { RedisRevocationStore } from '../../src/revocation/redis.js';
import { propagation, revocationContract } from './contract.js';
import { CI, parseInfo, PrivateRedis, randomTag, recordingLogger, REDIS_URL, serviceAvailable } from './helpers.js';

const missing = await serviceAvailable('redis');
if (missing !== undefined) {
  if (CI) t.fail(missing);
  else t.plan(0, `skipping: ${missing}`);
} else {
  const prefix = `pcl-t-${randomTag()}:`;
  // Markers without an expiry would otherwise stay in the shared Redis.
  t.teardown(async () => {
    const r = new Redis(REDIS_URL);
    let cursor = '0';
    do {
      const [next, keys] = await r.scan(cursor, 'MATCH', 'pcl-t-*', 'COUNT', 1000);
      const mine = keys.filter((k) => k.startsWith(prefix) || createdPrefixes.some((p) => k.startsWith(p)));
      if (mine.length) await r.del(...mine);
      cursor = next;
    } while (cursor !== '0');
    r.disconnect();
  });
  const createdPrefixes: string[] = [];
  await t.test('contract: redis', (t) =>
    revocationContract(t, {
      name: 'redis',
      shared: true,
      synchronous: false,
      open: async ({ expiryGraceMs }) =>
        new RedisRevocationStore({ url: REDIS_URL, keyPrefix: prefix, logger: recordingLogger(), expiryGraceMs }),
    }),
  );

  await t.test('keys and channel live under the prefix', async (t) => {
    const p = `pcl-t-${randomTag()}:`;
    createdPrefixes.push(p);
    const s = new RedisRevocationStore({ url: REDIS_URL, keyPrefix: p, logger: recordingLogger(), expiryGraceMs: 0 });
    t.teardown(() => s.close());
    t.ok(await s.waitReady(3_000));
    const until = Date.now() + 30_000;
    await s.revoke('key:abc', until);
    await s.revokeSubject('alice', 1234, undefined);
    const r = new Redis(REDIS_URL);
    t.teardown(() => r.disconnect());
    t.equal(await r.get(`${p}r:key:abc`), '1', 'id marker');
    const pttl = await r.pttl(`${p}r:key:abc`);
    t.ok(pttl > 28_000 && pttl <= 30_000, `marker expires with the credential (pttl ${pttl})`);
    t.equal(await r.get(`${p}s:alice`), '1234', 'subject timestamp');
    t.equal(await r.pttl(`${p}s:alice`), -1, 'subject entry without until does not expire');
    await s.revokeSubject('alice', 1000, Date.now() + 5_000);
    t.equal(await r.get(`${p}s:alice`), '1234', 'older timestamp does not overwrite');
    t.equal(await r.pttl(`${p}s:alice`), -1, 'a permanent entry is not given an expiry');
    await r.del(`${p}r:key:abc`, `${p}s:alice`);
  });

  await t.test('a revoke right after opening waits for the connection', async (t) => {
    const p = `pcl-t-${randomTag()}:`;
    createdPrefixes.push(p);
    const s = new RedisRevocationStore({ url: REDIS_URL, keyPrefix: p, logger: recordingLogger(), expiryGraceMs: 0 });
    t.teardown(() => s.close());
    await s.revoke('key:cli', Date.now() + 10_000);
    t.equal(await s.isRevoked({ revocationId: 'key:cli', subject: 's', issuedAt: 0 }), true);
  });

  await t.test('checks arm no timer per command: one sweep bounds every MGET in flight', async (t) => {
    // A timer per MGET (ioredis's commandTimeout) kept each batch's requests reachable from
    // the timer lists until it was cleared, and under load the gateway's young generation
    // then carried ~10 MB into every scavenge.
    const p = `pcl-t-${randomTag()}:`;
    createdPrefixes.push(p);
    const s = new RedisRevocationStore({ url: REDIS_URL, keyPrefix: p, logger: recordingLogger(), expiryGraceMs: 0, timeout: 1_000 });
    t.teardown(() => s.close());
    t.ok(await s.waitReady(3_000));
    await s.revoke('key:timer', Date.now() + 10_000);
    const real = { setTimeout: globalThis.setTimeout, setInterval: globalThis.setInterval };
    let timeouts = 0;
    let intervals = 0;
    globalThis.setTimeout = ((...a: Parameters<typeof setTimeout>) => {
      timeouts++;
      return real.setTimeout(...a);
    }) as typeof setTimeout;
    globalThis.setInterval = ((...a: Parameters<typeof setInterval>) => {
      intervals++;
      return real.setInterval(...a);
    }) as typeof setInterval;
    let answers: boolean[];
    try {
      // 200 checks, each in a turn of its own: 200 MGETs.
      answers = [];
      for (let i = 0; i < 200; i++) answers.push(await s.isRevoked({ revocationId: i % 2 ? 'key:timer' : `key:none-${i}`, subject: 's', issuedAt: 0 }));
    } finally {
      globalThis.setTimeout = real.setTimeout;
      globalThis.setInterval = real.setInterval;
    }
    t.equal(answers.filter(Boolean).length, 100, 'every answer right');
    t.equal(timeouts, 0, 'no setTimeout per check');
    t.ok(intervals <= 5, `one sweep timer, kept while checks keep coming (${intervals} started)`);
  });

  await t.test('a burst of concurrent checks shares round trips', async (t) => {
    // A private server, so its counters see nothing but this burst.
    const server = await PrivateRedis.start();
    t.teardown(() => server.kill());
    const s = new RedisRevocationStore({ url: server.url, logger: recordingLogger(), expiryGraceMs: 0 });
    t.teardown(() => s.close());
    t.ok(await s.waitReady(3_000));
    await s.revoke('key:revoked-7', undefined);
    const N = 1_000;
    const refs = Array.from({ length: N }, (_, i) => ({ revocationId: `key:revoked-${i}`, subject: `s${i % 10}`, issuedAt: Date.now() }));
    // Warm the script cache and connection so the measurement is only the checks.
    await Promise.all(refs.slice(0, 10).map((r) => s.isRevoked(r)));

    const stats = async () => parseInfo(await server.admin((r) => r.info('all')));
    const before = await stats();
    // Count what the client puts on the wire: writes on sockets to this server during the burst.
    let writes = 0;
    const origWrite = Socket.prototype.write;
    Socket.prototype.write = function (this: Socket, ...args: unknown[]) {
      if (this.remotePort === server.port) writes++;
      return (origWrite as (...a: unknown[]) => boolean).apply(this, args);
    } as typeof origWrite;
    const t0 = performance.now();
    let answers: boolean[];
    try {
      answers = await Promise.all(refs.map((r) => s.isRevoked(r)));
    } finally {
      Socket.prototype.write = origWrite;
    }
    const elapsed = performance.now() - t0;
    const after = await stats();

    t.equal(answers.filter(Boolean).length, 1, 'exactly the revoked credential is reported');
    t.equal(answers[7], true);
    const calls = (m: Map<string, string>) => Number(/calls=(\d+)/.exec(m.get('cmdstat_mget') ?? 'calls=0')![1]);
    const mgets = calls(after) - calls(before);
    // The admin connection's own INFO costs one read; the rest are the store's writes as the server saw them.
    const reads = Number(after.get('total_reads_processed')) - Number(before.get('total_reads_processed')) - 1;
    t.equal(mgets, 1, 'checks made in one turn of the event loop share one MGET');
    t.ok(writes <= 3, `the client sent ${N} checks in few writes (${writes})`);
    t.ok(reads <= 20, `few server reads for ${N} checks (${reads})`);

    // For comparison: the same checks one after another, each waiting for its answer.
    const t1 = performance.now();
    for (const r of refs.slice(0, 200)) await s.isRevoked(r);
    const serialUs = ((performance.now() - t1) * 1000) / 200;

    const line = `redis burst: ${N} concurrent checks in ${elapsed.toFixed(1)} ms = ${((elapsed * 1000) / N).toFixed(1)} µs/check; ` +
      `${writes} client write(s), ${mgets} MGETs, ${reads} server socket reads (${(N / Math.max(1, writes)).toFixed(0)} checks per round trip); ` +
      `sequential: ${serialUs.toFixed(1)} µs/check`;
    t.comment(line);
    console.log(line);

    // Checks made in different turns get their own MGET; concurrent checks of one
    // credential all get its answer.
    const b2 = await stats();
    const same = { revocationId: 'key:revoked-7', subject: 's7', issuedAt: Date.now() };
    const first = Promise.all(Array.from({ length: 50 }, () => s.isRevoked(same)));
    await new Promise((r) => setImmediate(r));
    const second = Promise.all([s.isRevoked(refs[3]!), s.isRevoked(same)]);
    const [a1, a2] = await Promise.all([first, second]);
    t.ok(a1.every((x) => x === true), 'every concurrent check of a revoked credential says revoked');
    t.same(a2, [false, true], 'answers reach the right callers');
    t.equal(calls(await stats()) - calls(b2), 2, 'one MGET per turn');
  });

  t.teardown(() => {
    for (const p of propagation) console.log(`propagation ${p.backend} ${p.kind}: ${p.ms.toFixed(3)} ms`);
  });
}
