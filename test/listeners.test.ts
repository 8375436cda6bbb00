import t from 'tap';
import net from 'node:net';
import { request } from 'undici';
import { parseConfig } from '../src/config/load.js';
import { startPortcullis } from '../src/gateway.js';
import { verdictOf, type RateLimiter } from '../src/limits/types.js';
import { startUpstream } from './helpers/upstream.js';
import { memoryLogger } from './helpers/gateway.js';

// startPortcullis runs the listeners it is asked for: the gateway alone (on a limiter it is
// handed), or the admin listener alone (on the same store, with its own readiness checks
// and metrics text).
const up = await startUpstream();
t.teardown(() => up.close());
const loaded = () => parseConfig(`
upstreams: { api: { url: "${up.url}" } }
store: { url: "sqlite://memory" }
admin: { token: "admin-secret-token" }
roles: [basic, admin]
identity: { assertion: { header: x-auth-assertion, ttl: 60s } }
rateLimits:
  policies:
    - { name: per-key, limit: 100, window: 1m, by: credential }
routes:
  - match: { path: "/limited/**" }
    minRole: basic
    rateLimit: [per-key]
    upstream: api
  - match: { path: "/**" }
    minRole: basic
    upstream: api
`, 'listeners.yaml', {});

/** Whether anything accepts connections on the port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

t.test('the gateway listener alone, counting on the limiter it is given', async (t) => {
  const calls: number[] = [];
  let closed = false;
  const limiter: RateLimiter = {
    check: (hits) => {
      calls.push(hits.length);
      return verdictOf(hits, false, hits.map(() => 0), hits.map(() => 5_000));
    },
    connected: () => true,
    close: async () => {
      closed = true;
    },
  };
  const admin = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
  const p = await startPortcullis(loaded(), { logger: memoryLogger().logger, listeners: { admin: false }, limiter, listen: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: admin } });
  t.teardown(() => p.close(100));
  t.equal(p.admin, undefined, 'no admin listener');
  t.equal(p.adminAddress, undefined);
  t.notOk(await listening(admin), 'nothing on the admin port');
  const key = (await p.core.keys.create({ subject: 'svc', role: 'basic' })).key;
  const open = await request(`${p.gateway!.url()}/x`, { headers: { 'x-api-key': key } });
  await open.body.dump();
  t.equal(open.statusCode, 200, 'the gateway serves');
  const limited = await request(`${p.gateway!.url()}/limited/x`, { headers: { 'x-api-key': key } });
  await limited.body.dump();
  t.equal(limited.statusCode, 429, 'the given limiter decides');
  t.same(calls, [1]);
  await p.close(100);
  t.notOk(closed, 'the limiter is left to its owner');
});

t.test('the admin listener alone, with extra readiness checks and metrics text', async (t) => {
  const p = await startPortcullis(loaded(), {
    logger: memoryLogger().logger,
    listeners: { gateway: false },
    admin: { host: '127.0.0.1', port: 0 },
    checks: [{ name: 'workers', ready: () => false }],
    metricsText: async () => 'workers_up 3\n',
  });
  t.teardown(() => p.close(100));
  t.equal(p.gateway, undefined, 'no gateway listener');
  const base = `http://127.0.0.1:${p.adminAddress!.port}`;
  const ready = await request(`${base}/readyz`);
  t.equal(ready.statusCode, 503);
  t.same((await ready.body.json() as { checks: unknown }).checks, { store: true, revocation: true, jwks: true, workers: false }, 'its checks and the given one; no limiter');
  const metrics = await request(`${base}/metrics`);
  t.equal(await metrics.body.text(), 'workers_up 3\n', 'the metrics text given');
  const jwks = await request(`${base}/.well-known/jwks.json`);
  t.equal((await jwks.body.json() as { keys: unknown[] }).keys.length, 1, 'the assertion JWKS');
  const created = await request(`${base}/admin/v1/keys`, {
    method: 'POST',
    headers: { authorization: 'Bearer admin-secret-token', 'content-type': 'application/json' },
    body: JSON.stringify({ subject: 'svc', role: 'basic' }),
  });
  t.equal(created.statusCode, 201, 'the admin API acts on the store');
  const { id } = await created.body.json() as { id: string };
  t.equal((await p.core.keys.list({ subject: 'svc' }))[0]?.id, id);
});
