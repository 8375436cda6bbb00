import t from 'tap';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import WebSocket from 'ws';
import type { Authenticator, Credential, Identity } from '../../src/authn/types.js';
import { StoreError } from '../../src/store/errors.js';
import { startTestGateway } from '../helpers/gateway.js';
import { rawGet, rawRequest } from '../helpers/raw.js';
import { startUpstream } from '../helpers/upstream.js';

// Faults inside the gateway and at the upstream's websocket edge, each with its own code:
// the gateway's own failure is 500 internal-error (never reported as an upstream or store
// outage), a store failure 503 store-unavailable, a websocket upstream that never answers
// its handshake 504 upstream-timeout.

const up = await startUpstream();
t.teardown(() => up.close());

// Accepts connections and never answers: a hung upstream.
const held = new Set<net.Socket>();
const silent = net.createServer((s) => { held.add(s); s.on('error', () => undefined); });
await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
t.teardown(() => { for (const s of held) s.destroy(); silent.close(); });
const silentUrl = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;

/** Fails the way it is told to, on the value it is given. */
class FaultyAuthenticator implements Authenticator {
  readonly kind = 'apiKey' as const;
  authenticate(c: Credential): Identity {
    if (c.value === 'throws-type-error') throw new TypeError("Cannot read properties of undefined (reading 'role')");
    if (c.value === 'store-down') throw new StoreError('store-unavailable', 'connection refused');
    return { method: 'apiKey', subject: 'ok', role: 'basic', roleRank: 0, scopes: [], scopesHeader: '', audiences: [], issuedAt: 0, revocationId: 'key:ok', keyId: 'k1' } as unknown as Identity;
  }
}

const g = await startTestGateway(
  `
upstreams:
  api: { url: "${up.url}", timeout: 300ms }
  hung: { url: "${silentUrl}", timeout: 300ms }
roles: [basic]
log: { level: silent }
routes:
  - match: { path: "/hung/**" }
    public: true
    upstream: hung
  - match: { path: "/**" }
    minRole: basic
    upstream: api
`,
  { services: { authenticators: () => ({ apiKey: new FaultyAuthenticator() }) } },
);
t.teardown(() => g.close());
const port = Number(new URL(g.url).port);

t.test("the gateway's own failure is 500 internal-error, and nothing reaches the upstream", async (t) => {
  const before = up.seen.length;
  const r = await rawGet(port, '/things', ['X-Api-Key: throws-type-error']);
  t.equal(r.status, 500);
  t.equal(r.headers['content-type'], 'application/problem+json');
  const body = JSON.parse(r.body);
  t.equal(body.code, 'internal-error');
  t.notMatch(r.body, /Cannot read properties/, 'the fault itself is not shown to the client');
  t.equal(up.seen.length, before, 'the upstream saw nothing');
  const rec = g.records.at(-1)!;
  t.match(rec, { status: 500, code: 'internal-error', decision: 'error' }, 'logged as the gateway\'s error');
});

t.test('a store failure is 503 store-unavailable', async (t) => {
  const before = up.seen.length;
  const r = await rawGet(port, '/things', ['X-Api-Key: store-down']);
  t.equal(r.status, 503);
  t.equal(JSON.parse(r.body).code, 'store-unavailable');
  t.equal(r.headers['retry-after'], '1');
  t.equal(up.seen.length, before);
});

t.test('a websocket handshake to a hung upstream ends in 504 within its timeout', async (t) => {
  const started = performance.now();
  const r = await rawRequest(port, 'GET /hung/ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n', 5000);
  t.equal(r.status, 504, 'upstream-timeout');
  t.equal(JSON.parse(r.body).code, 'upstream-timeout');
  t.ok(performance.now() - started < 4000, 'answered, not left hanging');
});

t.test('an open websocket outlives the handshake timeout', async (t) => {
  const ws = new WebSocket(`${g.url.replace('http', 'ws')}/ws`, { headers: { 'x-api-key': 'fine' } });
  await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject); });
  await new Promise((r) => setTimeout(r, 700));
  const echoed = new Promise<string>((resolve) => ws.once('message', (m) => resolve(m.toString())));
  ws.send('still here');
  t.equal(await echoed, 'echo:still here', 'idle past the 300 ms timeout, the tunnel still carries messages');
  ws.close();
});
