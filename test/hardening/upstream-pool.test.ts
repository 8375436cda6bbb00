import t from 'tap';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { startTestGateway } from '../helpers/gateway.js';
import { exchangeRaw, rawRequest } from '../helpers/raw.js';
import { startRawUpstream } from './raw-upstream.js';

// The gateway's pooled connections to the upstream, judged from the upstream's side: a
// connection that carries a request the gateway will never finish must be closed, never
// kept (it would hold one of the pool's few sockets for as long as the upstream waits) and
// never reused (the next request would be read as the rest of the unfinished body).

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A raw upstream that answers every request as soon as its head has arrived, before its
 * body — as servers do for a 404, 401 or 413 — and keeps the connection open. It records,
 * per connection, every byte it read and whether the connection is still open.
 */
async function startEarlyAnswering() {
  const conns: Array<{ text: string; open: boolean }> = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    sockets.add(sock);
    const c = { text: '', open: true };
    conns.push(c);
    let answered = 0;
    sock.on('error', () => undefined);
    sock.on('close', () => { c.open = false; });
    sock.on('data', (d: Buffer) => {
      c.text += d.toString('latin1');
      const heads = c.text.match(/^[A-Z]+ \S+ HTTP\/1\.1\r\n/gm)?.length ?? 0;
      for (; answered < heads; answered++) sock.write('HTTP/1.1 413 Content Too Large\r\ncontent-length: 8\r\n\r\ntoo big\n');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    conns,
    close: () => new Promise<void>((r) => { for (const s of sockets) s.destroy(); server.close(() => r()); }),
  };
}

const up = await startEarlyAnswering();
t.teardown(() => up.close());
const MAX_SOCKETS = 2;
const g = await startTestGateway(`
listen: { headersTimeout: 2s, requestTimeout: 30s }
upstreams:
  api: { url: "${up.url}", timeout: 1s, maxSockets: ${MAX_SOCKETS} }
roles: [basic]
log: { level: silent }
routes:
  - match: { path: "/public/**" }
    public: true
    upstream: api
`);
t.teardown(() => g.close());
const port = Number(new URL(g.url).port);

/** Starts an upload of `declared` bytes, sends `sent` of them, waits for the answer, then leaves. */
async function abandonUpload(head: string, partial: string): Promise<string> {
  const sock = net.connect(port, '127.0.0.1');
  sock.on('error', () => undefined);
  let got = '';
  sock.on('data', (d) => { got += d.toString('latin1'); });
  sock.write(`POST /public/upload HTTP/1.1\r\nHost: api.test\r\n${head}\r\n${partial}`);
  for (let i = 0; i < 50 && !got.includes('too big'); i++) await sleep(20);
  sock.destroy();
  return got;
}

t.test('a client that leaves mid-body after an early answer does not keep an upstream socket', async (t) => {
  const uploads: Array<[string, string]> = [
    ['Content-Length: 1000\r\n', 'first ten!'],
    ['Transfer-Encoding: chunked\r\n', 'a\r\nfirst ten!\r\n'],
  ];
  for (const [head, partial] of uploads) {
    const answer = await abandonUpload(head, partial);
    t.match(answer, /^HTTP\/1\.1 413 /, `${head.trim()}: the early answer reached the client`);
  }
  await sleep(300);
  const stale = up.conns.filter((c) => c.open && c.text.includes('POST /public/upload'));
  t.equal(stale.length, 0, 'every connection carrying an unfinished upload was closed');

  // With the pool's sockets still held, this request would wait for one forever.
  const r = await exchangeRaw(port, 'GET /public/after HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n', { idleMs: 1500 });
  t.same(r.responses.map((x) => x.status), [413], 'a later client is still served');
  const carrying = up.conns.filter((c) => c.text.includes('GET /public/after'));
  t.equal(carrying.length, 1, 'on one connection');
  t.notOk(carrying[0]?.text.includes('POST /public/upload'), 'never one that carried the unfinished upload');
});

t.test('a request that times out queued for a connection is answered 504 at once and never sent later', async (t) => {
  // One connection; the upstream timeout bounds a request from dispatch, its wait for a
  // connection included. The first request holds the connection past that timeout (its
  // client trickles the body, so the exchange is not idle, and the upstream only answers
  // once it has the whole request).
  const TIMEOUT = 500;
  const raw = await startRawUpstream();
  t.teardown(() => raw.close());
  const gw = await startTestGateway(`
listen: { headersTimeout: 2s, requestTimeout: 30s }
upstreams:
  api: { url: "${raw.url}", timeout: ${TIMEOUT}ms, maxSockets: 1 }
log: { level: silent }
routes:
  - match: { path: "/public/**" }
    public: true
    upstream: api
`);
  t.teardown(() => gw.close());
  const gwPort = Number(new URL(gw.url).port);

  const BODY = 'x'.repeat(20);
  const holder = net.connect(gwPort, '127.0.0.1');
  holder.on('error', () => undefined);
  let held = '';
  holder.on('data', (d) => { held += d.toString('latin1'); });
  holder.write(`POST /public/hold HTTP/1.1\r\nHost: api.test\r\nContent-Length: ${BODY.length}\r\nConnection: close\r\n\r\n${BODY[0]}`);
  for (let i = 0; i < 100 && !raw.text().includes('POST /public/hold'); i++) await sleep(10);
  t.match(raw.text(), /POST \/public\/hold/, 'the first request holds the only connection');
  let sent = 1;
  const trickle = setInterval(() => { if (sent < BODY.length - 1) holder.write(BODY[sent++]!); }, 100);
  t.teardown(() => { clearInterval(trickle); holder.destroy(); });

  const startedAt = performance.now();
  const queued = await rawRequest(gwPort, 'GET /public/queued HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n', 5 * TIMEOUT);
  const elapsed = performance.now() - startedAt;
  t.equal(queued.status, 504, 'the queued request is answered 504');
  t.equal((JSON.parse(queued.body) as { code: string }).code, 'upstream-timeout');
  t.ok(elapsed >= TIMEOUT - 50 && elapsed < 3 * TIMEOUT, `within about the timeout (${Math.round(elapsed)} ms for ${TIMEOUT} ms)`);
  t.equal(held, '', 'the first request is still held');

  // Release the connection: the first request completes, and the pool hands its connection on.
  clearInterval(trickle);
  holder.write(BODY.slice(sent));
  for (let i = 0; i < 200 && !/\r\n\r\n\{/.test(held); i++) await sleep(10);
  t.match(held, /^HTTP\/1\.1 200 /, 'the first request is answered once the upstream has it whole');
  await sleep(4 * TIMEOUT);
  t.same(raw.requests.map((r) => r.requestLine), ['POST /public/hold HTTP/1.1'], 'the upstream saw only the first request');
  t.notMatch(raw.text(), /\/public\/queued/, 'not a byte of the timed-out one');

  const after = await rawRequest(gwPort, 'GET /public/after HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n', 5 * TIMEOUT);
  t.equal(after.status, 200, 'the pool still serves the next request');
  t.same(raw.requests.map((r) => r.requestLine), ['POST /public/hold HTTP/1.1', 'GET /public/after HTTP/1.1']);
});
