import t from 'tap';
import net from 'node:net';
import { request } from 'undici';
import { startTestGateway } from '../helpers/gateway.js';
import { startUpstream } from '../helpers/upstream.js';

// Clients that hold connections: heads and bodies trickled byte by byte, oversized heads,
// more connections than allowed. Each is cut off by the listen.* limit meant for it.

const up = await startUpstream();
t.teardown(() => up.close());

const HEADERS_TIMEOUT_MS = 1_000;
const REQUEST_TIMEOUT_MS = 2_500;
const yaml = (extra = '') => `
listen: { headersTimeout: ${HEADERS_TIMEOUT_MS}ms, requestTimeout: ${REQUEST_TIMEOUT_MS}ms, maxHeaderSize: 4096${extra} }
upstreams:
  api: { url: "${up.url}", timeout: 10s }
log: { level: silent }
routes:
  - match: { path: "/**" }
    public: true
    upstream: api
`;

interface Trickle {
  /** Milliseconds from the first byte until the gateway closed the connection (or gave up waiting). */
  ms: number;
  closed: boolean;
  response: string;
  /** Bytes written before the connection was closed. */
  written: number;
}

/** Sends `head` whole, then `slow` one byte every `everyMs`, until the gateway closes or `maxMs` passes. */
function trickle(port: number, head: string, slow: string, everyMs: number, maxMs: number): Promise<Trickle> {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    const t0 = performance.now();
    let response = '';
    let written = 0;
    let closed = false;
    let timer: NodeJS.Timeout | undefined;
    const finish = () => {
      clearInterval(timer);
      clearTimeout(limit);
      sock.destroy();
      resolve({ ms: performance.now() - t0, closed, response, written });
    };
    const limit = setTimeout(finish, maxMs);
    sock.on('data', (d) => void (response += d.toString('latin1')));
    sock.on('close', () => {
      closed = true;
      finish();
    });
    sock.on('error', () => undefined);
    sock.on('connect', () => {
      sock.write(head);
      written = head.length;
      let i = 0;
      timer = setInterval(() => {
        if (i >= slow.length || sock.destroyed) return;
        sock.write(slow[i++]!);
        written++;
      }, everyMs);
    });
  });
}

t.test('a head trickled byte by byte is cut off by headersTimeout', async (t) => {
  const g = await startTestGateway(yaml());
  t.teardown(() => g.close());
  const port = Number(new URL(g.url).port);
  const before = up.seen.length;
  // 20 s worth of head at one byte per 100 ms: only the timeout can end it early.
  const r = await trickle(port, 'GET /slowloris HTTP/1.1\r\nHost: a\r\n', 'X-Padding: ' + 'a'.repeat(200) + '\r\n\r\n', 100, 20_000);
  t.ok(r.closed, `the connection was closed (after ${Math.round(r.ms)} ms, ${r.written} bytes)`);
  t.ok(r.ms >= HEADERS_TIMEOUT_MS - 100, 'not before headersTimeout');
  t.ok(r.ms < HEADERS_TIMEOUT_MS + 1_500, `within headersTimeout plus 1.5 s (${Math.round(r.ms)} ms)`);
  t.match(r.response, /^HTTP\/1\.1 4\d\d /, `answered with a 4xx before closing (${r.response.split('\r\n')[0]})`);
  t.equal(up.seen.length, before, 'nothing reached the upstream');
});

t.test('a body trickled past requestTimeout is cut off', async (t) => {
  const g = await startTestGateway(yaml());
  t.teardown(() => g.close());
  const port = Number(new URL(g.url).port);
  const body = 'b'.repeat(200);
  const r = await trickle(port, `POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: ${body.length}\r\n\r\n`, body, 100, 20_000);
  t.ok(r.closed, `the connection was closed (after ${Math.round(r.ms)} ms, ${r.written} bytes)`);
  t.ok(r.ms >= REQUEST_TIMEOUT_MS - 100, 'not before requestTimeout');
  t.ok(r.ms < REQUEST_TIMEOUT_MS + 1_500, `within requestTimeout plus 1.5 s (${Math.round(r.ms)} ms)`);
  t.ok(r.written < 4 + body.length, 'the body never completed');
});

t.test('a head over maxHeaderSize gets 431 or 400', async (t) => {
  const g = await startTestGateway(yaml());
  t.teardown(() => g.close());
  const port = Number(new URL(g.url).port);
  const before = up.seen.length;
  const r = await trickle(port, `GET /big HTTP/1.1\r\nHost: a\r\nX-Big: ${'x'.repeat(5000)}\r\n\r\n`, '', 1000, 5_000);
  t.match(r.response, /^HTTP\/1\.1 (431|400) /, r.response.split('\r\n')[0]);
  t.ok(r.closed, 'and the connection is closed');
  t.equal(up.seen.length, before, 'nothing reached the upstream');
  // Just under the limit is fine.
  const ok = await request(`${g.url}/fits`, { headers: { 'x-fits': 'y'.repeat(3000) } });
  await ok.body.dump();
  t.equal(ok.statusCode, 200, 'a head under the limit is served');
});

t.test('maxConnections holds', async (t) => {
  const MAX = 3;
  const g = await startTestGateway(yaml(`, maxConnections: ${MAX}`));
  t.teardown(() => g.close());
  const port = Number(new URL(g.url).port);
  const open = async () => {
    const sock = net.connect(port, '127.0.0.1');
    await new Promise<void>((r) => sock.once('connect', () => r()));
    return sock;
  };
  /** Sends one keep-alive request on `sock`; resolves with the status line, or null when the socket closes first. */
  const ask = (sock: net.Socket) =>
    new Promise<string | null>((resolve) => {
      let buf = '';
      const onData = (d: Buffer) => {
        buf += d.toString('latin1');
        if (buf.includes('\r\n\r\n')) {
          sock.off('data', onData);
          resolve(buf.split('\r\n')[0]!);
        }
      };
      sock.on('data', onData);
      sock.once('close', () => resolve(null));
      sock.on('error', () => undefined);
      sock.write('GET /held HTTP/1.1\r\nHost: a\r\n\r\n');
    });
  const held: net.Socket[] = [];
  t.teardown(() => {
    for (const s of held) s.destroy();
  });
  for (let i = 0; i < MAX; i++) {
    const s = await open();
    held.push(s);
    t.match(await ask(s), /^HTTP\/1\.1 200/, `connection ${i + 1} of ${MAX} served`);
  }
  const extra = await open();
  held.push(extra);
  t.equal(await ask(extra), null, `connection ${MAX + 1} is closed without being served`);
  held[0]!.destroy();
  await new Promise((r) => setTimeout(r, 100));
  const again = await open();
  held.push(again);
  t.match(await ask(again), /^HTTP\/1\.1 200/, 'a slot freed by a closed connection is usable again');
});
