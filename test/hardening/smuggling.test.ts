import t from 'tap';
import { startTestGateway } from '../helpers/gateway.js';
import { publicAdminBasic, startRawUpstream, type RawSeen } from './raw-upstream.js';
import { exchangeRaw, type ExchangeOptions } from '../helpers/raw.js';

// Request smuggling and framing attacks against a running gateway, sent as raw bytes. The
// upstream is a bare TCP server that frames requests itself, so "the upstream saw a second
// request" is judged independently of Node's parser. A marker (`smuggled`) is put in every
// request that must never reach the upstream.

const raw = await startRawUpstream();
t.teardown(() => raw.close());

const table = { 'good-key': { subject: 'alice', role: 'basic', scopes: [] } };
const yaml = publicAdminBasic(raw.url, { head: 'listen: { headersTimeout: 1s, requestTimeout: 3s, maxHeaderSize: 4096 }' });
const g = await startTestGateway(yaml, { table });
t.teardown(() => g.close());
const port = Number(new URL(g.url).port);

const exchange = (chunks: string | string[], opts?: ExchangeOptions) => exchangeRaw(port, chunks, opts);

const AUTH = 'Authorization: Bearer good-key\r\n';

/** What the upstream received while `fn` ran (requests and raw text). */
async function upstreamDuring(fn: () => Promise<void>): Promise<{ requests: RawSeen[]; text: string }> {
  const n = raw.requests.length;
  const mark = raw.mark();
  await fn();
  await new Promise((r) => setTimeout(r, 150));
  return { requests: raw.requests.slice(n), text: raw.textSince(mark) };
}

// [name, bytes, statuses the client must get (in order), requests the upstream must frame
// (a number, or [min, max]), whether the gateway must close the connection]
type Case = [name: string, bytes: string, statuses: number[], upstream: number | [number, number], close?: boolean];
// Smuggled requests aim at a public route: were one processed, it would reach the upstream.
const smuggle = 'GET /public/smuggled HTTP/1.1\r\nHost: a\r\n\r\n';
const cases: Case[] = [
  // Framing headers that disagree.
  ['Content-Length with Transfer-Encoding', `POST /public/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${smuggle}`, [400], 0],
  ['Transfer-Encoding with Content-Length', `POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n${smuggle}`, [400], 0],
  ['duplicate Content-Length, equal', `POST /public/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello${smuggle}`, [400], 0],
  ['duplicate Content-Length, different', `POST /public/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 41\r\n\r\nhello${smuggle}`, [400], 0],
  ['Content-Length list', `POST /public/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello${smuggle}`, [400], 0],
  ['Content-Length with a plus sign', `POST /public/x HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello${smuggle}`, [400], 0],
  ['Content-Length with a minus sign', `POST /public/x HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\nhello${smuggle}`, [400], 0],
  ['Content-Length with inner space', `POST /public/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5 0\r\n\r\nhello${smuggle}`, [400], 0],
  ['Content-Length in hex', `POST /public/x HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\nhello${smuggle}`, [400], 0],
  ['space before the colon', `POST /public/x HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nhello${smuggle}`, [400], 0],
  // Odd Transfer-Encodings: Node frames some of these as chunked; the guard refuses them and
  // the connection ends there, so what Node framed as a next request is never processed.
  ['Transfer-Encoding: chunked, identity', `POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n${smuggle}`, [400], 0],
  ['Transfer-Encoding: identity, chunked', `POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n${smuggle}`, [400], 0],
  ['Transfer-Encoding: Chunked with trailing junk', `POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked x\r\n\r\n5\r\nhello\r\n0\r\n\r\n${smuggle}`, [400], 0],
  ['Transfer-Encoding: xchunked', `POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n${smuggle}`, [400], 0],
  ['Transfer-Encoding: chunked in two header lines', `POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n${smuggle}`, [400], 0],
  ['Transfer-Encoding split over two lines', `POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n${smuggle}`, [400], 0],
  ['Transfer-Encoding with a vertical tab', `POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\x0bchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n${smuggle}`, [400], 0],
  ['Transfer-Encoding on HTTP/1.0', `POST /public/x HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n${smuggle}`, [400], 0],
  // Line folding and line endings.
  ['obs-fold continuation', `GET /public/x HTTP/1.1\r\nHost: a\r\nX-Folded: a\r\n b\r\n\r\n`, [400], 0],
  ['obs-fold into Transfer-Encoding', `POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: 5\r\n\r\nhello${smuggle}`, [400], 0],
  ['bare LF line endings', `GET /public/x HTTP/1.1\nHost: a\n\n`, [400], 0],
  ['bare LF in one header line', `GET /public/x HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n`, [400], 0],
  ['bare CR in a header value', `GET /public/x HTTP/1.1\r\nHost: a\r\nX-A: b\rX-Smuggled: 1\r\n\r\n`, [400], 0],
  // Chunk framing.
  ['chunk size not hex', `POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n${smuggle}`, [400], 0],
  ['negative chunk size', `POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n${smuggle}`, [400], 0],
  ['chunk size with 0x', `POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n${smuggle}`, [400], 0],
  ['chunk size overflow', `POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n${smuggle}`, [400], 0],
  ['chunk data longer than its size', `POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n${smuggle}`, [400], 0],
  ['chunk size with a space before the extension', `POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5 ;x\r\nhello\r\n0\r\n\r\n${smuggle}`, [400], 0],
  // Request lines.
  ['HTTP/0.9 request line', `GET /public/x\r\n\r\n`, [400], 0],
  ['unknown HTTP version', `GET /public/x HTTP/1.2\r\nHost: a\r\n\r\n`, [400], 0],
  ['absolute-form with a different Host', `GET http://evil.example/public/x HTTP/1.1\r\nHost: a\r\n\r\n`, [400], 0, false],
  ['missing Host', `GET /public/x HTTP/1.1\r\n\r\n`, [400], 0],
  ['duplicate Host', `GET /public/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n`, [400], 0],
  // Node's parser takes a doubled space as one separator; the upstream gets a canonical
  // request line, so gateway and upstream agree on what was asked.
  ['request line with two spaces (read as one)', `GET  /public/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`, [200], 1],
  ['two spaces before the version (read as one)', `GET /public/x  HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`, [200], 1],
  // A smuggling attempt with a pipelined request behind it: the connection ends at the refusal.
  ['pipelined request behind CL+TE', `POST /public/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${smuggle}GET /public/after HTTP/1.1\r\nHost: a\r\n\r\n`, [400], 0],
  ['pipelined request behind an invalid chunk', `POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n${smuggle}`, [400], 0],
  ['pipelined request behind a refused header', `GET /public/x HTTP/1.1\r\nHost: a\r\nX_Auth_Subject: mallory\r\n\r\n${smuggle}`, [400], 0],
  // Data after the request that ends the connection is never processed, and never cuts
  // into the answer to that request.
  ['request after Connection: close', `GET /public/one HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n${smuggle}`, [200], 1],
  ['request after an HTTP/1.0 request', `GET /public/one HTTP/1.0\r\nHost: a\r\n\r\n${smuggle}`, [200], 1],
  ['garbage after a request on a kept-alive connection', `GET /public/one HTTP/1.1\r\nHost: a\r\n\r\nNOT HTTP AT ALL\r\n\r\n`, [200, 400], 1],
  // Legal shapes that must be served exactly once, correctly framed.
  ['Content-Length with spaces around it (legal OWS)', `POST /public/x HTTP/1.1\r\nHost: a\r\nContent-Length:   5  \r\nConnection: close\r\n\r\nhello`, [200], 1],
  ['Transfer-Encoding: chunked, any case (legal)', `POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ChUnKeD\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n`, [200], 1],
  ['chunk extension (legal)', `POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5;name=value\r\nhello\r\n0\r\n\r\n`, [200], 1],
  // HTTP/1.0 keep-alive: answered (with "connection: close", as an HTTP/1.0 response cannot
  // be chunked); a request pipelined behind it may have been forwarded before that was known.
  ['HTTP/1.0 with keep-alive, then a second request', `GET /public/one HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\nGET /public/two HTTP/1.0\r\nHost: a\r\n\r\n`, [200], [1, 2]],
  ['two pipelined requests', `GET /public/one HTTP/1.1\r\nHost: a\r\n\r\nPOST /app/two HTTP/1.1\r\nHost: a\r\n${AUTH}Content-Length: 3\r\nConnection: close\r\n\r\nabc`, [200, 200], 2],
];

t.test('smuggling and framing attacks', async (t) => {
  for (const [name, bytes, statuses, upstreamCount, mustClose = statuses.includes(400)] of cases) {
    let result!: Awaited<ReturnType<typeof exchange>>;
    const seen = await upstreamDuring(async () => {
      result = await exchange(bytes);
    });
    const got = result.responses.map((r) => r.status);
    t.same(got, statuses, `${name}: ${statuses.join(', ')} (got ${got.join(', ') || JSON.stringify(result.raw.slice(0, 80))})`);
    const [min, max] = typeof upstreamCount === 'number' ? [upstreamCount, upstreamCount] : upstreamCount;
    t.ok(seen.requests.length >= min && seen.requests.length <= max, `${name}: the upstream framed ${min === max ? min : `${min}–${max}`} request(s) (${seen.requests.length})`);
    t.notOk(/smuggled/i.test(seen.text), `${name}: nothing smuggled reached the upstream`);
    if (mustClose) t.ok(result.closed, `${name}: the connection is closed`);
    for (const r of result.responses) if (r.status >= 400) t.equal(r.headers['content-type'], 'application/problem+json', `${name}: the refusal is problem+json`);
    for (const r of seen.requests) {
      t.match(r.requestLine, /^(GET|POST) \/\S* HTTP\/1\.1$/, `${name}: canonical request line upstream`);
      const names = r.headerLines.map((l) => l.slice(0, l.indexOf(':')).toLowerCase());
      t.ok(names.filter((n) => n === 'content-length' || n === 'transfer-encoding').length <= 1, `${name}: at most one framing header upstream`);
      if (r.requestLine.startsWith('POST')) t.equal(r.body.toString('latin1'), r.requestLine.includes('/app/two') ? 'abc' : 'hello', `${name}: the body arrived whole`);
    }
  }
});

t.test('hop-by-hop and Connection-named headers never reach the upstream', async (t) => {
  let result!: Awaited<ReturnType<typeof exchange>>;
  const seen = await upstreamDuring(async () => {
    result = await exchange(
      'GET /public/x HTTP/1.1\r\nHost: a\r\nConnection: close, X-Drop-Me\r\nX-Drop-Me: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nUpgrade: h2c\r\nTrailer: X-T\r\nX-Auth-Subject: mallory\r\nX-Keep: yes\r\n\r\n',
    );
  });
  t.same(result.responses.map((r) => r.status), [200]);
  t.equal(seen.requests.length, 1);
  const names = seen.requests[0]!.headerLines.map((l) => l.slice(0, l.indexOf(':')).toLowerCase());
  for (const n of ['x-drop-me', 'keep-alive', 'proxy-connection', 'te', 'upgrade', 'trailer', 'x-auth-subject']) t.notOk(names.includes(n), `${n} removed`);
  t.ok(names.includes('x-keep'), 'an ordinary header is kept');
});
