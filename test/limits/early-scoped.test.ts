import t from 'tap';
import { LocalRateLimiter } from '../../src/limits/local.js';
import { RedisRateLimiter } from '../../src/limits/redis.js';
import { formatScopedSubject } from '../../src/revocation/ids.js';
import { RedisRevocationStore } from '../../src/revocation/redis.js';
import { scopedCheck } from '../../src/revocation/source.js';
import { startRawUpstream } from '../hardening/raw-upstream.js';
import { startTestGateway } from '../helpers/gateway.js';
import { rawGet } from '../helpers/raw.js';
import { serviceSkip } from '../helpers/services.js';
import { parseInfo, PrivateRedis, recordingLogger } from '../revocation/helpers.js';

// The script's revocation gate goes through the same scoped check the gateway serves with
// (src/gateway.ts: scopedCheck), so a subject revoked as `keys revoke-subject` writes it
// (keys scope) refuses the subject's keys, and one revoked for its tokens only does not.

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
  const calls = async (cmd: string) => Number(/calls=(\d+)/.exec(parseInfo(await server.admin((r) => r.info('commandstats'))).get(`cmdstat_${cmd}`) ?? 'calls=0')![1]);
  const seen = (path: string) => up.requests.filter((r) => r.requestLine.includes(path)).length;

  t.test('the gate tests the subject in the scope revokeSubject writes', async (t) => {
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
