import http from 'node:http';
import net from 'node:net';
import t from 'tap';
import { request } from 'undici';
import { LocalRateLimiter } from '../../src/limits/local.js';
import { startTestGateway } from '../helpers/gateway.js';

// The RateLimit headers of a limited route are on every answer: the upstream's (ours
// beside its own, which win when it sends the same names) and the gateway's own 502.

const up = http.createServer((req, res) => {
  if (req.url?.startsWith('/own')) res.setHeader('RateLimit', '"upstream";r=5;t=1');
  res.end('ok');
});
await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
t.teardown(() => up.close());
// A port nothing listens on: the upstream is down.
const dead = net.createServer();
await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r));
const deadPort = (dead.address() as net.AddressInfo).port;
await new Promise<void>((r) => dead.close(() => r()));

const g = await startTestGateway(`
upstreams:
  api: { url: "http://127.0.0.1:${(up.address() as net.AddressInfo).port}" }
  down: { url: "http://127.0.0.1:${deadPort}" }
roles: [basic]
log: { level: silent }
rateLimits:
  policies:
    - { name: per-key, limit: 10, window: 1m, by: credential }
routes:
  - match: { path: "/down/**" }
    minRole: basic
    rateLimit: [per-key]
    upstream: down
  - match: { path: "/**" }
    minRole: basic
    rateLimit: [per-key]
    upstream: api
`, { table: { 'key-a': { subject: 'alice', role: 'basic', keyId: 'ka' } }, services: { limiter: new LocalRateLimiter() } });
t.teardown(() => g.close());

async function get(path: string) {
  const r = await request(`${g.url}${path}`, { headers: { 'x-api-key': 'key-a' } });
  await r.body.dump();
  return { status: r.statusCode, headers: r.headers };
}

t.test('a proxied answer carries them once', async (t) => {
  const r = await get('/plain');
  t.equal(r.status, 200);
  t.equal(r.headers['ratelimit-policy'], '"per-key";q=10;w=60');
  t.equal(r.headers['ratelimit'], '"per-key";r=9;t=0');
});

t.test('an upstream that states its own RateLimit keeps it; ours stay beside it', async (t) => {
  const r = await get('/own');
  t.equal(r.status, 200);
  t.equal(r.headers['ratelimit'], '"upstream";r=5;t=1', 'the upstream\'s, alone');
  t.equal(r.headers['ratelimit-policy'], '"per-key";q=10;w=60', 'our policy header, as it sent none');
});

t.test('the gateway\'s own 502 on a limited route carries them too', async (t) => {
  const r = await get('/down/x');
  t.equal(r.status, 502);
  t.equal(r.headers['ratelimit-policy'], '"per-key";q=10;w=60');
  t.equal(r.headers['ratelimit'], '"per-key";r=7;t=0');
});
