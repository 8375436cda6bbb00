import t from 'tap';
import http from 'node:http';
import net from 'node:net';
import { parseConfig } from '../../src/config/load.js';
import { startPortcullis } from '../../src/gateway.js';
import { generateKey, generateRefreshToken, parseKey } from '../../src/keys/format.js';
import type { RequestRecord } from '../../src/ops/record.js';
import { memoryLogger } from '../helpers/gateway.js';
import { startUpstream } from '../helpers/upstream.js';

// A 429 from the failed-attempt limits is held for `apiKeys.failedAttempts.delay` before it
// is sent: a flood of guesses gets one answer per connection per delay, while other clients
// (and the holder of the real key) are answered at once. Real gateway, real authenticator,
// embedded store.

const up = await startUpstream();
t.teardown(() => up.close());

async function start(delay: string) {
  const yaml = `
listen: { host: 127.0.0.1, port: 0 }
store: { url: "sqlite://memory" }
upstreams: { api: { url: "${up.url}" } }
roles: [basic]
apiKeys:
  failedAttempts: { max: 2, window: 1m, delay: ${delay} }
routes:
  - match: { path: "/**" }
    minRole: basic
    upstream: api
`;
  const { logger } = memoryLogger('warn');
  const records: RequestRecord[] = [];
  // The gateway listener alone, with the refresh endpoint it is started with.
  const p = await startPortcullis(parseConfig(yaml, 'test.yaml', {}), {
    logger,
    listeners: { admin: false },
    observers: [{ onRequest: (r) => records.push(r) }],
    listen: { host: '127.0.0.1', port: 0 },
  });
  const key = await p.core.keys.create({ subject: 'holder', role: 'basic' });
  const id = parseKey(key.key, 'pcl')!.id;
  return { url: p.gateway!.url(), key: key.key, id, core: p.core, records, close: () => p.close(100) };
}

/** One request on its own connection; resolves with the status and how long the answer took. */
function get(url: string, key: string, agent?: http.Agent): Promise<{ status: number; ms: number; retryAfter: string | undefined }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = http.get(`${url}/items`, { headers: { 'x-api-key': key }, agent: agent ?? new http.Agent({ keepAlive: false }) }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode!, ms: performance.now() - t0, retryAfter: res.headers['retry-after'] as string | undefined }));
    });
    req.on('error', reject);
  });
}

t.test('a rate-limited refusal is held for the delay; nobody else waits', async (t) => {
  const g = await start('600ms');
  t.teardown(g.close);
  t.equal((await get(g.url, g.key)).status, 200, 'the holder is admitted (and cached)');
  for (let i = 0; i < 2; i++) {
    const r = await get(g.url, generateKey('pcl', g.id).key);
    t.equal(r.status, 401, `wrong secret ${i + 1}: 401`);
    t.ok(r.ms < 500, `answered at once (${r.ms.toFixed(0)} ms)`);
  }
  const held = get(g.url, generateKey('pcl', g.id).key);
  // While that 429 is held, the real key and a request with no key are answered at once.
  await new Promise((r) => setTimeout(r, 50));
  const during = await Promise.all([get(g.url, g.key), get(g.url, '')]);
  t.same(during.map((r) => r.status), [200, 401], 'other requests meanwhile: 200 and 401');
  t.ok(during.every((r) => r.ms < 450), `not queued behind the held refusal (${during.map((r) => r.ms.toFixed(0)).join(', ')} ms)`);
  const r = await held;
  t.equal(r.status, 429);
  t.ok(Number(r.retryAfter) > 0, 'with Retry-After');
  t.ok(r.ms >= 590, `held for the delay (${r.ms.toFixed(0)} ms)`);
  const rec = g.records.find((x) => x.code === 'rate-limited');
  t.ok(rec, 'the refusal is logged');
  t.ok(rec!.latencyMs >= 590, 'with its latency including the hold');
});

t.test('a flood of guesses is paced: one answer per connection per delay', async (t) => {
  const g = await start('250ms');
  t.teardown(g.close);
  t.equal((await get(g.url, g.key)).status, 200, 'the holder was verified before the flood');
  for (let i = 0; i < 2; i++) await get(g.url, generateKey('pcl', g.id).key);
  const connections = 4;
  const runFor = 1200;
  let answers = 0;
  let valid = 0;
  const end = performance.now() + runFor;
  const flooders = Array.from({ length: connections }, async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    while (performance.now() < end) {
      const r = await get(g.url, generateKey('pcl', g.id).key, agent);
      if (r.status !== 429) throw new Error(`flood answer ${r.status}`);
      answers++;
    }
    agent.destroy();
  });
  // The holder keeps being served at full speed throughout.
  const holder = (async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    while (performance.now() < end) {
      if ((await get(g.url, g.key, agent)).status === 200) valid++;
    }
    agent.destroy();
  })();
  await Promise.all([...flooders, holder]);
  const ceiling = connections * (Math.ceil(runFor / 250) + 1);
  t.ok(answers <= ceiling, `${answers} flood answers in ${runFor} ms over ${connections} connections (at most ${ceiling})`);
  t.ok(answers >= connections, 'every flooding connection was answered');
  t.ok(valid > answers, `the holder got ${valid} answers meanwhile`);
});

t.test('a client that leaves while held frees its refusal at once', async (t) => {
  const g = await start('5s');
  t.teardown(g.close);
  t.equal((await get(g.url, g.key)).status, 200);
  for (let i = 0; i < 2; i++) await get(g.url, generateKey('pcl', g.id).key);
  const t0 = performance.now();
  await new Promise<void>((resolve) => {
    const req = http.get(`${g.url}/items`, { headers: { 'x-api-key': generateKey('pcl', g.id).key }, agent: new http.Agent({ keepAlive: false }) });
    req.on('error', () => resolve());
    setTimeout(() => {
      req.destroy();
      resolve();
    }, 200);
  });
  const deadline = performance.now() + 2000;
  while (!g.records.some((x) => x.code === 'rate-limited') && performance.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  const rec = g.records.find((x) => x.code === 'rate-limited');
  t.ok(rec, 'the refusal is logged');
  t.ok(performance.now() - t0 < 4000, 'long before the 5 s hold would have ended');
  const after = await get(g.url, g.key);
  t.equal(after.status, 200, 'the holder is still served');
  t.ok(after.ms < 1000, 'at once');
});

t.test('a websocket handshake is held like any other request', async (t) => {
  const g = await start('600ms');
  t.teardown(g.close);
  for (let i = 0; i < 2; i++) await get(g.url, generateKey('pcl', g.id).key);
  const { port } = new URL(g.url);
  const t0 = performance.now();
  const answer = await new Promise<string>((resolve, reject) => {
    const sock = net.connect(Number(port), '127.0.0.1', () => {
      sock.write(
        'GET /items HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n' +
          'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n' +
          `x-api-key: ${generateKey('pcl', g.id).key}\r\n\r\n`,
      );
    });
    let text = '';
    sock.on('data', (d) => (text += d));
    sock.on('end', () => resolve(text));
    sock.on('error', reject);
  });
  const ms = performance.now() - t0;
  t.match(answer, /^HTTP\/1\.1 429 /, 'the handshake is refused with 429');
  t.ok(ms >= 590, `after the delay (${ms.toFixed(0)} ms)`);
});

t.test('a flood of forged refresh tokens is held too', async (t) => {
  const g = await start('600ms');
  t.teardown(g.close);
  const k = await g.core.keys.create({ subject: 'refresher', role: 'basic', refreshable: true });
  const refresh = (token: string) =>
    new Promise<{ status: number; ms: number }>((resolve, reject) => {
      const t0 = performance.now();
      const body = JSON.stringify({ refreshToken: token });
      const req = http.request(`${g.url}/.portcullis/refresh`, { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }, agent: new http.Agent({ keepAlive: false }) }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode!, ms: performance.now() - t0 }));
      });
      req.on('error', reject);
      req.end(body);
    });
  for (let i = 0; i < 2; i++) t.equal((await refresh(generateRefreshToken('pcl', k.id).key)).status, 401, `forged token ${i + 1}: 401`);
  const r = await refresh(generateRefreshToken('pcl', k.id).key);
  t.equal(r.status, 429);
  t.ok(r.ms >= 590, `held for the delay (${r.ms.toFixed(0)} ms)`);
});

t.test('delay 0: a rate-limited refusal is sent at once', async (t) => {
  const g = await start('0ms');
  t.teardown(g.close);
  for (let i = 0; i < 2; i++) await get(g.url, generateKey('pcl', g.id).key);
  const r = await get(g.url, generateKey('pcl', g.id).key);
  t.equal(r.status, 429);
  t.ok(r.ms < 500, `answered at once (${r.ms.toFixed(0)} ms)`);
});
