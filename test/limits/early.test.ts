import t from 'tap';
import { LocalRateLimiter } from '../../src/limits/local.js';
import { RedisRateLimiter } from '../../src/limits/redis.js';
import type { RevocationCheck } from '../../src/revocation/check.js';
import { formatScopedSubject } from '../../src/revocation/ids.js';
import { RedisRevocationStore } from '../../src/revocation/redis.js';
import { scopedCheck } from '../../src/revocation/source.js';
import { startRawUpstream } from '../hardening/raw-upstream.js';
import { startTestGateway } from '../helpers/gateway.js';
import { rawGet } from '../helpers/raw.js';
import { serviceSkip } from '../helpers/services.js';
import { parseInfo, PrivateRedis, recordingLogger } from '../revocation/helpers.js';

// With revocation and limits both on Redis, a limited request's limits are checked in the
// round trip of its revocation check — and a revoked credential is never counted, so a
// stranger holding a revoked key cannot spend a shared bucket. Judged at the upstream. The
// gate goes through the same scoped check the gateway serves with (src/gateway.ts:
// scopedCheck): a subject revoked for its tokens only keeps its keys served.

const skip = await serviceSkip('redis');
if (skip) t.plan(0, `skipping: ${skip}`);
else {
  const server = await PrivateRedis.start();
  t.teardown(() => server.kill());
  const store = new RedisRevocationStore({ url: server.url, logger: recordingLogger(), expiryGraceMs: 0 });
  t.teardown(() => store.close());
  t.ok(await store.waitReady(3_000), 'revocation store ready');
  const up = await startRawUpstream();
  t.teardown(() => up.close());
  const yaml = `
upstreams: { api: { url: "${up.url}" } }
roles: [basic]
log: { level: silent }
rateLimits:
  policies:
    - { name: shared, limit: 3, window: 1h, by: global }
routes:
  - match: { path: "/limited/**" }
    minRole: basic
    rateLimit: [shared]
    upstream: api
  - match: { path: "/**" }
    minRole: basic
    upstream: api
`;
  const table = { 'key-a': { subject: 'alice', role: 'basic', keyId: 'ka' }, 'key-b': { subject: 'bob', role: 'basic', keyId: 'kb' }, 'key-c': { subject: 'carol', role: 'basic', keyId: 'kc' }, 'key-d': { subject: 'dave', role: 'basic', keyId: 'kd' } };
  const calls = async (cmd: string) => Number(/calls=(\d+)/.exec(parseInfo(await server.admin((r) => r.info('commandstats'))).get(`cmdstat_${cmd}`) ?? 'calls=0')![1]);
  const seen = (path: string) => up.requests.filter((r) => r.requestLine.includes(path)).length;

  await t.test('revoked requests are refused and never counted; limits and revocation are one command', async (t) => {
    const limiter = new RedisRateLimiter({ url: server.url, prefix: 'rl-a:', shared: store.turn, onError: 'deny', fallback: new LocalRateLimiter() });
    const g = await startTestGateway(yaml, { table, services: { limiter, revocation: store } });
    t.teardown(async () => { await g.close(); await limiter.close(); });
    const port = Number(new URL(g.url).port);
    await store.revoke('key:bob', Date.now() + 60_000);

    const evalBefore = await calls('evalsha');
    const mgetBefore = await calls('mget');
    const existsBefore = await calls('exists');
    const revoked = await Promise.all(Array.from({ length: 6 }, (_, i) => rawGet(port, `/limited/bob-${i}`, ['X-Api-Key: key-b'])));
    t.same(revoked.map((r) => r.status), [401, 401, 401, 401, 401, 401], 'a revoked key is refused');
    t.ok(revoked.every((r) => r.body.includes('key-revoked')), 'key-revoked');
    t.ok((await calls('evalsha')) - evalBefore >= 1, 'its limits were checked beside its revocation check');
    t.ok((await calls('exists')) - existsBefore >= 1, 'with the revocation marker tested inside the script (once per batch and key)');
    t.equal((await calls('mget')) - mgetBefore, 0, 'and no MGET of its own: the script answered the revocation check');

    const answers = [];
    for (let i = 0; i < 4; i++) answers.push(await rawGet(port, `/limited/alice-${i}`, ['X-Api-Key: key-a']));
    t.same(answers.map((r) => r.status), [200, 200, 200, 429], 'the shared bucket still holds all 3 for everyone else');
    t.equal(answers[2]!.headers['ratelimit'], '"shared";r=0;t=0', 'RateLimit counts only the admitted');
    t.equal(seen('/limited/bob-'), 0, 'the upstream never saw the revoked key');
    t.equal(seen('/limited/alice-'), 3, 'and saw exactly the 3 admitted');
  });

  await t.test('the script\'s answer is the revocation check: a revoked credential is refused even when the usual check would not see it', async (t) => {
    // A revocation check that answers "not revoked" (as one that ran a moment before the
    // marker was written would) while the script's gate sees the marker.
    const stale: RevocationCheck = { isRevoked: () => Promise.resolve(false), gate: (id) => store.gate(id) };
    const limiter = new RedisRateLimiter({ url: server.url, prefix: 'rl-b:', shared: store.turn, onError: 'deny', fallback: new LocalRateLimiter() });
    const g = await startTestGateway(yaml, { table, services: { limiter, revocation: stale } });
    t.teardown(async () => { await g.close(); await limiter.close(); });
    const port = Number(new URL(g.url).port);
    await store.revoke('key:carol', Date.now() + 60_000);
    const r = await rawGet(port, '/limited/carol', ['X-Api-Key: key-c']);
    t.equal(r.status, 401, 'refused');
    t.match(r.body, /key-revoked/, 'as revoked');
    t.equal(seen('/limited/carol'), 0, 'the upstream never saw it');
    const a = await rawGet(port, '/limited/alice-b', ['X-Api-Key: key-a']);
    t.equal(a.headers['ratelimit'], '"shared";r=2;t=0', 'the revoked request was not counted');
  });

  await t.test('a subject-wide revocation is tested by the script too', async (t) => {
    const limiter = new RedisRateLimiter({ url: server.url, prefix: 'rl-c:', shared: store.turn, onError: 'deny', fallback: new LocalRateLimiter() });
    const g = await startTestGateway(yaml, { table, services: { limiter, revocation: store } });
    t.teardown(async () => { await g.close(); await limiter.close(); });
    const port = Number(new URL(g.url).port);
    t.equal((await rawGet(port, '/limited/dave-0', ['X-Api-Key: key-d'])).status, 200, 'served before');
    await store.revokeSubject('dave', Date.now());
    const r = await rawGet(port, '/limited/dave-1', ['X-Api-Key: key-d']);
    t.equal(r.status, 401, 'every credential of the subject issued before is refused');
    t.equal(seen('/limited/dave-1'), 0, 'and never reaches the upstream');
    const a = await rawGet(port, '/limited/alice-c', ['X-Api-Key: key-a']);
    t.equal(a.headers['ratelimit'], '"shared";r=1;t=0', 'only the two admitted were counted');
  });

  await t.test('through the gateway\'s scoped check, the gate tests the subject in the scope revokeSubject writes', async (t) => {
    const limiter = new RedisRateLimiter({ url: server.url, prefix: 'rl-s:', shared: store.turn, onError: 'deny', fallback: new LocalRateLimiter() });
    const g = await startTestGateway(`
upstreams: { api: { url: "${up.url}" } }
roles: [basic]
log: { level: silent }
rateLimits:
  policies:
    - { name: per, limit: 100, window: 1h, by: credential }
routes:
  - match: { path: "/**" }
    minRole: basic
    rateLimit: [per]
    upstream: api
`, { table: { 'key-e': { subject: 'erin', role: 'basic', keyId: 'ke', issuedAt: Date.now() - 60_000 } }, services: { limiter, revocation: scopedCheck(store) } });
    t.teardown(async () => { await g.close(); await limiter.close(); });
    const port = Number(new URL(g.url).port);
    const get = (path: string) => rawGet(port, path, ['X-Api-Key: key-e']);

    t.equal((await get('/e-0')).status, 200, 'served');
    await store.revokeSubject(formatScopedSubject('tokens', 'erin'), Date.now());
    t.equal((await get('/e-1')).status, 200, 'the subject\'s tokens revoked: its keys still served');
    const mget = await calls('mget');
    await store.revokeSubject(formatScopedSubject('keys', 'erin'), Date.now());
    const r = await get('/e-2');
    t.equal(r.status, 401, 'the subject\'s keys revoked: refused');
    t.match(r.body, /key-revoked/);
    t.equal(await calls('mget'), mget, 'answered by the script\'s gate (no MGET)');
    t.equal(seen('/e-2'), 0, 'the upstream never saw it');
  });
}
