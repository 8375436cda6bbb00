import t from 'tap';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { request } from 'undici';
import { generateKey } from '../../src/keys/format.js';
import { REDIS_URL, redisPrefix, serviceSkip, tempDatabase } from '../helpers/services.js';
import { startRelay } from '../helpers/relay.js';
import { startUpstream } from '../helpers/upstream.js';
import { isSuccess, outageConfig, recovery, signJwt, sleep, startOutageGateway, Traffic, type Probe } from './harness.js';

// Redis (the revocation view) fails under two running instances sharing one store and one
// Redis: one with onError deny, one with allow. Redis is reached through a relay that is
// paused (a hung server) and cut (a dead one) while both serve steady traffic.

const skip = (await serviceSkip('postgres')) || (await serviceSkip('redis'));
if (skip) {
  t.plan(0, `skipping: ${skip}`);
} else {
  await t.test('Redis outages under two instances (deny and allow)', async (t) => {
  const db = await tempDatabase();
  t.teardown(() => db.drop());
  const rp = redisPrefix();
  t.teardown(() => rp.clean());
  const redisTarget = new URL(REDIS_URL);
  const relay = await startRelay({ host: redisTarget.hostname, port: Number(redisTarget.port || 6379) });
  t.teardown(() => relay.close());
  const upDeny = await startUpstream();
  const upAllow = await startUpstream();
  t.teardown(() => upDeny.close());
  t.teardown(() => upAllow.close());

  const REVOCATION_TIMEOUT_MS = 300;
  // Stated bound: a check gives up after the revocation timeout; nothing may take much longer.
  const BOUND_MS = REVOCATION_TIMEOUT_MS + 1_200;
  const redisUrl = `redis://${relay.address}`;
  const common = { store: db.url, redis: redisUrl, keyPrefix: rp.prefix, revocationTimeout: `${REVOCATION_TIMEOUT_MS}ms` };
  const deny = await startOutageGateway(outageConfig({ ...common, upstream: upDeny.url, onError: 'deny' }));
  t.teardown(() => deny.p.close(100));
  const allow = await startOutageGateway(outageConfig({ ...common, upstream: upAllow.url, onError: 'allow' }));
  t.teardown(() => allow.p.close(100));
  t.ok(await deny.p.core.revocation.waitReady(5_000), 'deny instance: revocation ready');
  t.ok(await allow.p.core.revocation.waitReady(5_000), 'allow instance: revocation ready');

  const core = deny.p.core;
  const good = await core.keys.create({ subject: 'alice', role: 'basic' });
  const doomed = await core.keys.create({ subject: 'mallory', role: 'basic' });
  const goodJwt = await signJwt({ sub: 'alice', role: 'basic' });
  const doomedJwt = await signJwt({ sub: 'eve', role: 'basic' });
  const bearer = (v: string) => ({ authorization: `Bearer ${v}` });
  const probes: Record<string, Probe> = {
    key: { path: '/api/k', headers: bearer(good.key) },
    jwt: { path: '/api/j', headers: bearer(goodJwt.token) },
    revokedKey: { path: '/api/rk', headers: bearer(doomed.key) },
    revokedJwt: { path: '/api/rj', headers: bearer(doomedJwt.token) },
    none: { path: '/api/n' },
    badKey: { path: '/api/b', headers: { 'x-api-key': generateKey('pcl').key } },
    public: { path: '/public/p' },
  };
  const td = new Traffic(deny.url, probes, { hangMs: 20_000, workers: 2 });
  const ta = new Traffic(allow.url, probes, { hangMs: 20_000, workers: 2 });

  // Both instances cache both credentials that are about to be revoked, then revoke them:
  // the eviction must reach the other instance too.
  for (const tr of [td, ta]) {
    for (const k of ['key', 'jwt', 'revokedKey', 'revokedJwt'] as const) t.equal((await tr.send(k, 'before-revocation')).status, 200, `warm-up ${k}`);
  }
  const seenAtRevocation = { deny: upDeny.seen.length, allow: upAllow.seen.length };
  await core.keys.revoke(doomed.id);
  await core.tokens.revokeJti(doomedJwt.jti, doomedJwt.exp);
  await sleep(200);
  for (const tr of [td, ta]) {
    t.equal((await tr.send('revokedKey', 'warm')).code, 'key-revoked', 'revoked key refused on both instances');
    t.equal((await tr.send('revokedJwt', 'warm')).code, 'token-revoked', 'revoked JWT refused on both instances');
  }

  const readyz = async (p: typeof deny.p) => {
    const r = await request(`http://127.0.0.1:${p.adminAddress!.port}/readyz`, { headersTimeout: 5_000 });
    await r.body.dump();
    return r.statusCode;
  };
  const setPhase = (ph: string) => {
    td.phase = ph;
    ta.phase = ph;
  };
  const recoveries: Record<string, number> = {};
  const readiness: Record<string, number> = {};
  const lag = monitorEventLoopDelay({ resolution: 10 });
  lag.enable();
  td.start();
  ta.start();
  setPhase('up');
  await sleep(1_000);

  for (const outage of ['paused', 'cut'] as const) {
    // A phase ends before the state changes, so its requests never straddle the change.
    setPhase(`entering-${outage}`);
    if (outage === 'paused') relay.pause();
    else await relay.cut();
    setPhase(`redis-${outage}`);
    await sleep(2_500);
    readiness[outage] = await readyz(deny.p);
    setPhase(`restoring-${outage}`);
    await relay.restore();
    recoveries[outage] = await recovery(td, 'key', 200, 15_000);
    recoveries[`allow-${outage}`] = await recovery(ta, 'revokedJwt', 401, 15_000);
    readiness[`after-${outage}`] = await readyz(deny.p);
    setPhase(`after-${outage}`);
    await sleep(1_000);
  }
  setPhase('end');
  await Promise.all([td.stop(), ta.stop()]);
  if (process.env.HARDENING_DEBUG) for (const l of deny.lines) t.comment(l);
  lag.disable();
  t.comment(`test process event loop delay: max ${Math.round(lag.max / 1e6)} ms p99 ${Math.round(lag.percentile(99) / 1e6)} ms`);

  for (const outage of ['paused', 'cut'] as const) {
    const phase = `redis-${outage}`;
    t.test(`Redis ${outage}, onError deny`, async (t) => {
      t.comment(JSON.stringify({ key: td.summary(phase, 'key'), jwt: td.summary(phase, 'jwt'), revokedJwt: td.summary(phase, 'revokedJwt'), maxMs: Math.round(td.maxMs(phase)) }));
      for (const kind of ['key', 'jwt', 'revokedJwt']) {
        const s = td.inside(phase, kind);
        t.ok(s.length > 3, `${kind}: traffic during the outage (${s.length})`);
        t.same(td.summary(phase, kind, true), { [`503 revocation-unavailable`]: s.length }, `${kind}: every request 503 revocation-unavailable`);
        t.ok(s.every((x) => x.retryAfter !== undefined && Number(x.retryAfter) > 0), `${kind}: every 503 carries Retry-After`);
      }
      t.same(td.summary(phase, 'public', true), { '200': td.inside(phase, 'public').length }, 'public routes keep being served');
      t.same(td.summary(phase, 'none', true), { '401 token-missing': td.inside(phase, 'none').length }, 'no credential: 401');
      t.equal(readiness[outage], 503, '/readyz reports not ready');
      t.equal(readiness[`after-${outage}`], 200, '/readyz reports ready again');
      t.ok(td.maxMs(phase) < BOUND_MS, `no request took longer than ${BOUND_MS} ms (max ${Math.round(td.maxMs(phase))})`);
      t.ok(recoveries[outage]! >= 0 && recoveries[outage]! < 10_000, `resumed by itself after restore (${Math.round(recoveries[outage]!)} ms)`);
      const after = `after-${outage}`;
      t.same(td.summary(after, 'key', true), { '200': td.inside(after, 'key').length }, 'valid key served again after recovery');
      t.same(td.summary(after, 'revokedJwt', true), { '401 token-revoked': td.inside(after, 'revokedJwt').length }, 'revoked JWT refused again after recovery');
    });
    t.test(`Redis ${outage}, onError allow`, async (t) => {
      t.comment(JSON.stringify({ key: ta.summary(phase, 'key'), jwt: ta.summary(phase, 'jwt'), revokedKey: ta.summary(phase, 'revokedKey'), revokedJwt: ta.summary(phase, 'revokedJwt'), maxMs: Math.round(ta.maxMs(phase)) }));
      for (const kind of ['key', 'jwt', 'public']) {
        const s = ta.inside(phase, kind);
        t.ok(s.length > 3, `${kind}: traffic during the outage (${s.length})`);
        t.same(ta.summary(phase, kind, true), { '200': s.length }, `${kind}: served`);
      }
      t.ok(ta.maxMs(phase) < BOUND_MS, `no request took longer than ${BOUND_MS} ms (max ${Math.round(ta.maxMs(phase))})`);
      const r = recoveries[`allow-${outage}`]!;
      t.ok(r >= 0 && r < 10_000, `revocation checks resumed by themselves after restore (${Math.round(r)} ms)`);
    });
  }

  t.test('nothing revoked or unauthenticated is ever served', async (t) => {
    for (const [name, tr] of [['deny', td], ['allow', ta]] as const) {
      for (const kind of ['revokedKey', 'none', 'badKey']) {
        const served = tr.samples.filter((s) => s.kind === kind && s.phase !== 'before-revocation' && isSuccess(s.status));
        t.same(served, [], `${name}: ${kind} never got a 2xx`);
      }
      const jwtServed = tr.samples.filter((s) => s.kind === 'revokedJwt' && s.phase !== 'before-revocation' && isSuccess(s.status));
      if (name === 'deny') t.same(jwtServed, [], 'deny: revoked JWT never got a 2xx');
      else t.comment(`allow: revoked JWT served ${jwtServed.length} times, only while Redis was down (onError: allow answers from what it knows)`);
      // Served while Redis was reachable: a request that began and ended in a phase where it was up.
      const whileUp = jwtServed.filter((s) => (s.phase === 'up' || s.phase.startsWith('after-')) && tr.within(s));
      if (name === 'allow') t.same(whileUp, [], 'allow: a revoked JWT is only ever served while Redis is unreachable');
      t.same(tr.samples.filter((s) => s.status === 0), [], `${name}: no request failed at the client or hung`);
      t.same(tr.mismatched(), [], `${name}: every 200 carried the answer to its own request`);
    }
    for (const [up, from] of [[upDeny, seenAtRevocation.deny], [upAllow, seenAtRevocation.allow]] as const) {
      const bad = up.seen.slice(from).filter((s) => !s.url.startsWith('/public/') && (s.headers['x-auth-subject'] === undefined || s.headers['x-auth-subject'] === 'mallory'));
      t.same(bad.map((s) => s.url), [], 'the upstream never saw an unauthenticated request or the revoked key');
    }
    t.same(upDeny.seen.filter((s) => s.headers['x-auth-subject'] === 'eve' && s.url === '/api/rj').length, 1, 'deny upstream saw the revoked JWT only during warm-up');
    t.ok(allow.lines.some((l) => l.includes('SERVING WITHOUT REVOCATION CHECK')), 'allow logs loudly that it serves without a revocation check');
  });
  });
}
