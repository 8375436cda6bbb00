import t from 'tap';
import { startRelay } from '../helpers/relay.js';
import { startUpstream } from '../helpers/upstream.js';
import { isSuccess, outageConfig, recovery, sleep, startOutageGateway, Traffic, type Probe } from './harness.js';

// The upstream fails under a running gateway (embedded store, in-process revocation): hung
// (paused relay) → 504 upstream-timeout within the upstream timeout; dead (cut relay) → 502
// upstream-unavailable at once; back → served, with no response ever handed to the wrong
// request. Authentication still runs first: refused requests never wait on the upstream.

await t.test('upstream outages under steady traffic', async (t) => {
  const up = await startUpstream();
  t.teardown(() => up.close());
  const relay = await startRelay({ host: '127.0.0.1', port: up.port });
  t.teardown(() => relay.close());

  const TIMEOUT_MS = 1_000;
  const gw = await startOutageGateway(outageConfig({ upstream: `http://${relay.address}`, store: 'sqlite://memory', upstreamTimeout: `${TIMEOUT_MS}ms` }));
  t.teardown(() => gw.p.close(100));

  const keys = gw.p.core.keys;
  const good = await keys.create({ subject: 'alice', role: 'basic' });
  const doomed = await keys.create({ subject: 'mallory', role: 'basic' });
  const bearer = (v: string) => ({ authorization: `Bearer ${v}` });
  const probes: Record<string, Probe> = {
    key: { path: '/api/k', headers: bearer(good.key) },
    public: { path: '/public/p' },
    revokedKey: { path: '/api/rk', headers: bearer(doomed.key) },
    none: { path: '/api/n' },
  };
  const tr = new Traffic(gw.url, probes, { workers: 2, hangMs: 20_000 });
  t.equal((await tr.send('revokedKey', 'before-revocation')).status, 200, 'warm-up: the key to be revoked works');
  const seenAtRevocation = up.seen.length;
  await keys.revoke(doomed.id);

  const recoveries: Record<string, number> = {};
  tr.start();
  tr.phase = 'up';
  await sleep(1_000);
  for (const outage of ['paused', 'cut'] as const) {
    tr.phase = `entering-${outage}`;
    if (outage === 'paused') relay.pause();
    else await relay.cut();
    tr.phase = `upstream-${outage}`;
    await sleep(outage === 'paused' ? 3_500 : 2_000);
    tr.phase = `restoring-${outage}`;
    await relay.restore();
    recoveries[outage] = await recovery(tr, 'key', 200, 10_000);
    tr.phase = `after-${outage}`;
    await sleep(1_000);
  }
  tr.phase = 'end';
  await tr.stop();

  t.test('upstream hung: 504 within its timeout', async (t) => {
    const phase = 'upstream-paused';
    t.comment(JSON.stringify({ key: tr.summary(phase, 'key'), public: tr.summary(phase, 'public'), maxMs: Math.round(tr.maxMs(phase)) }));
    for (const kind of ['key', 'public']) {
      const s = tr.inside(phase, kind);
      t.ok(s.length >= 4, `${kind}: traffic during the outage (${s.length})`);
      t.same(tr.summary(phase, kind, true), { '504 upstream-timeout': s.length }, `${kind}: 504 upstream-timeout`);
      const slowest = Math.max(...s.map((x) => x.ms));
      const fastest = Math.min(...s.map((x) => x.ms));
      t.ok(fastest >= TIMEOUT_MS - 50, `${kind}: not given up before the timeout (fastest ${Math.round(fastest)} ms)`);
      t.ok(slowest < TIMEOUT_MS + 1_000, `${kind}: answered within the timeout plus 1 s (slowest ${Math.round(slowest)} ms)`);
    }
    t.same(tr.summary(phase, 'revokedKey', true), { '401 key-revoked': tr.inside(phase, 'revokedKey').length }, 'revoked key: refused without waiting on the upstream');
    t.ok(tr.inside(phase, 'revokedKey').every((s) => s.ms < 500), 'refusals stay fast');
    t.ok(recoveries.paused! >= 0 && recoveries.paused! < 5_000, `resumed by itself after restore (${Math.round(recoveries.paused!)} ms)`);
  });

  t.test('upstream dead: 502 at once', async (t) => {
    const phase = 'upstream-cut';
    t.comment(JSON.stringify({ key: tr.summary(phase, 'key'), public: tr.summary(phase, 'public'), maxMs: Math.round(tr.maxMs(phase)) }));
    for (const kind of ['key', 'public']) {
      const s = tr.inside(phase, kind);
      t.ok(s.length >= 4, `${kind}: traffic during the outage (${s.length})`);
      t.same(tr.summary(phase, kind, true), { '502 upstream-unavailable': s.length }, `${kind}: 502 upstream-unavailable`);
      t.ok(s.every((x) => x.ms < 500), `${kind}: fast (slowest ${Math.round(Math.max(...s.map((x) => x.ms)))} ms)`);
    }
    t.ok(recoveries.cut! >= 0 && recoveries.cut! < 5_000, `resumed by itself after restore (${Math.round(recoveries.cut!)} ms)`);
  });

  t.test('after each outage: served again, nothing mixed up, nothing revoked served', async (t) => {
    for (const after of ['after-paused', 'after-cut']) {
      for (const kind of ['key', 'public']) t.same(tr.summary(after, kind, true), { '200': tr.inside(after, kind).length }, `${after}: ${kind} served`);
    }
    t.same(tr.mismatched(), [], 'every 200 carried the answer to its own request');
    t.same(tr.samples.filter((s) => (s.kind === 'revokedKey' && s.phase !== 'before-revocation') || s.kind === 'none').filter((s) => isSuccess(s.status)), [], 'revoked and unauthenticated requests never got a 2xx');
    t.same(tr.samples.filter((s) => s.status === 0), [], 'no request failed at the client or hung');
    const bad = up.seen.slice(seenAtRevocation).filter((s) => !s.url.startsWith('/public/') && (s.headers['x-auth-subject'] === undefined || s.headers['x-auth-subject'] === 'mallory'));
    t.same(bad.map((s) => s.url), [], 'the upstream never saw an unauthenticated request or the revoked key');
  });
});
