import t from 'tap';
import { request } from 'undici';
import { generateKey } from '../../src/keys/format.js';
import { DATABASE_URL, REDIS_URL, redisPrefix, serviceSkip, tempDatabase } from '../helpers/services.js';
import { startRelay } from '../helpers/relay.js';
import { startUpstream } from '../helpers/upstream.js';
import { isSuccess, outageConfig, recovery, signJwt, sleep, startOutageGateway, Traffic, type Probe } from './harness.js';

// PostgreSQL (the key store) fails under a running gateway: cached keys and JWTs keep
// working, keys the gateway has not verified yet get 503 store-unavailable, and nothing
// hangs. The database is reached through a relay that is cut (a dead server) and paused
// (a hung one, or a partition), while Redis stays up.

const skip = (await serviceSkip('postgres')) || (await serviceSkip('redis'));
if (skip) {
  t.plan(0, `skipping: ${skip}`);
} else {
  await t.test('PostgreSQL outages under steady traffic', async (t) => {
    const db = await tempDatabase();
    t.teardown(() => db.drop());
    const rp = redisPrefix();
    t.teardown(() => rp.clean());
    const pgTarget = new URL(DATABASE_URL);
    const relay = await startRelay({ host: pgTarget.hostname, port: Number(pgTarget.port || 5432) });
    t.teardown(() => relay.close());
    const up = await startUpstream();
    t.teardown(() => up.close());

    const storeUrl = new URL(db.url);
    storeUrl.host = relay.address;
    const gw = await startOutageGateway(outageConfig({ upstream: up.url, store: storeUrl.toString(), redis: REDIS_URL, keyPrefix: rp.prefix }));
    t.teardown(() => gw.p.close(100));
    t.ok(await gw.p.core.revocation.waitReady(5_000), 'revocation ready');

    const keys = gw.p.core.keys;
    const [good, doomed, fresh1, fresh2] = await Promise.all([
      keys.create({ subject: 'alice', role: 'basic' }),
      keys.create({ subject: 'mallory', role: 'basic' }),
      keys.create({ subject: 'fresh-1', role: 'basic' }),
      keys.create({ subject: 'fresh-2', role: 'basic' }),
    ]);
    const jwt = await signJwt({ sub: 'alice', role: 'basic' });
    const bearer = (v: string) => ({ authorization: `Bearer ${v}` });
    const probes: Record<string, Probe> = {
      key: { path: '/api/k', headers: bearer(good.key) },
      jwt: { path: '/api/j', headers: bearer(jwt.token) },
      // Becomes, at the start of each outage, a valid key this gateway has never verified: it needs the store.
      fresh: { path: '/api/f', headers: bearer(good.key) },
      revokedKey: { path: '/api/rk', headers: bearer(doomed.key) },
      none: { path: '/api/n' },
      badKey: { path: '/api/b', headers: bearer(generateKey('pcl').key) },
      public: { path: '/public/p' },
    };
    const tr = new Traffic(gw.url, probes, { hangMs: 30_000 });
    for (const k of ['key', 'jwt', 'revokedKey'] as const) t.equal((await tr.send(k, 'before-revocation')).status, 200, `warm-up ${k}`);
    const seenAtRevocation = up.seen.length;
    await keys.revoke(doomed.id);
    t.equal((await tr.send('revokedKey', 'warm')).code, 'key-revoked', 'revoked key refused');

    const admin = `http://127.0.0.1:${gw.p.adminAddress!.port}`;
    const readyz = async () => {
      const t0 = performance.now();
      try {
        const r = await request(`${admin}/readyz`, { headersTimeout: 20_000 });
        await r.body.dump();
        return { status: r.statusCode, ms: performance.now() - t0 };
      } catch (err) {
        return { status: 0, ms: performance.now() - t0, error: String(err) };
      }
    };

    // Stated bound: the store gives up on a new connection after 5 s and on a query after
    // 12 s (statement timeout plus 2 s); no client waits longer than that. /readyz answers
    // within about a second whatever its checks do.
    const BOUND_MS = 13_000;
    const READYZ_BOUND_MS = 1_500;
    // Long enough for a request on a hung connection to meet the 12 s query timeout inside the
    // phase even on a loaded machine.
    const HOLD: Record<string, number> = { cut: 3_000, paused: 22_000 };
    const freshFor: Record<string, string> = { cut: fresh1.key, paused: fresh2.key };
    const recoveries: Record<string, number> = {};
    const readiness: Record<string, { status: number; ms: number }> = {};
    tr.start();
    tr.phase = 'up';
    await sleep(1_000);
    for (const outage of ['cut', 'paused'] as const) {
      tr.phase = `entering-${outage}`;
      probes.fresh!.headers = bearer(freshFor[outage]!);
      if (outage === 'cut') await relay.cut();
      else {
        // Leave an idle connection in the pool, so the hang also meets a query on an open
        // connection (which only the client-side query timeout can end), not only new connects.
        t.equal((await readyz()).status, 200, 'ready before the pause');
        relay.pause();
      }
      tr.phase = `pg-${outage}`;
      const [r] = await Promise.all([readyz(), sleep(HOLD[outage]!)]);
      readiness[outage] = r;
      tr.phase = `restoring-${outage}`;
      await relay.restore();
      recoveries[outage] = await recovery(tr, 'fresh', 200, 20_000);
      readiness[`after-${outage}`] = await readyz();
      tr.phase = `after-${outage}`;
      await sleep(1_000);
    }
    tr.phase = 'end';
    await tr.stop();

    for (const outage of ['cut', 'paused'] as const) {
      const phase = `pg-${outage}`;
      t.test(`PostgreSQL ${outage}`, async (t) => {
        t.comment(JSON.stringify({ fresh: tr.summary(phase, 'fresh'), revokedKey: tr.summary(phase, 'revokedKey'), badKey: tr.summary(phase, 'badKey'), maxMs: Math.round(tr.maxMs(phase)), readyz: readiness[outage] }));
        for (const kind of ['key', 'jwt', 'public']) {
          const s = tr.inside(phase, kind);
          t.ok(s.length > 3, `${kind}: traffic during the outage (${s.length})`);
          t.same(tr.summary(phase, kind, true), { '200': s.length }, `${kind}: served throughout`);
        }
        const fresh = tr.inside(phase, 'fresh');
        t.ok(fresh.length > 0, `uncached key: traffic during the outage (${fresh.length})`);
        t.same(tr.summary(phase, 'fresh', true), { '503 store-unavailable': fresh.length }, 'uncached key: 503 store-unavailable');
        t.ok(fresh.every((s) => Number(s.retryAfter) > 0), 'uncached key: every 503 carries Retry-After');
        t.same(tr.summary(phase, 'none', true), { '401 token-missing': tr.inside(phase, 'none').length }, 'no credential: 401');
        t.ok(tr.maxMs(phase) < BOUND_MS, `no request took longer than ${BOUND_MS} ms (max ${Math.round(tr.maxMs(phase))})`);
        t.equal(readiness[outage]!.status, 503, '/readyz reports not ready');
        t.ok(readiness[outage]!.ms < READYZ_BOUND_MS, `/readyz answered within ${READYZ_BOUND_MS} ms (${Math.round(readiness[outage]!.ms)})`);
        t.ok(recoveries[outage]! >= 0, `an uncached key is served again after restore (${Math.round(recoveries[outage]!)} ms)`);
        t.equal(readiness[`after-${outage}`]!.status, 200, '/readyz reports ready again');
        const after = `after-${outage}`;
        t.same(tr.summary(after, 'fresh', true), { '200': tr.inside(after, 'fresh').length }, 'the once-uncached key keeps being served');
        t.same(tr.summary(after, 'revokedKey', true), { '401 key-revoked': tr.inside(after, 'revokedKey').length }, 'the revoked key is refused as revoked again');
      });
    }

    t.test('nothing revoked or unauthenticated is ever served', async (t) => {
      for (const kind of ['revokedKey', 'none', 'badKey']) {
        t.same(tr.samples.filter((s) => s.kind === kind && s.phase !== 'before-revocation' && isSuccess(s.status)), [], `${kind} never got a 2xx`);
      }
      t.same(tr.samples.filter((s) => s.status === 0), [], 'no request failed at the client or hung');
      t.same(tr.mismatched(), [], 'every 200 carried the answer to its own request');
      const bad = up.seen.slice(seenAtRevocation).filter((s) => !s.url.startsWith('/public/') && (s.headers['x-auth-subject'] === undefined || s.headers['x-auth-subject'] === 'mallory'));
      t.same(bad.map((s) => s.url), [], 'the upstream never saw an unauthenticated request or the revoked key');
    });
  });
}
