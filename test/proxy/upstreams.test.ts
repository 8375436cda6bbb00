import t from 'tap';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { clientResponseHeaders } from '../../src/proxy/dispatch.js';
import { Proxy, closeUpstreams, createUpstreams } from '../../src/proxy/upstreams.js';

/** The upstream's headers as undici hands them over: a flat list of raw names and values. */
function raw(h: http.IncomingHttpHeaders): Buffer[] {
  const out: Buffer[] = [];
  for (const [name, v] of Object.entries(h)) for (const one of Array.isArray(v) ? v : [v!]) out.push(Buffer.from(name, 'latin1'), Buffer.from(one, 'latin1'));
  return out;
}

/** A flat header list as the object Node would make of it (repeated names as a list). */
function asObject(list: string[]): http.OutgoingHttpHeaders {
  const out: Record<string, string | string[]> = {};
  for (let i = 0; i < list.length; i += 2) {
    const [name, v] = [list[i]!, list[i + 1]!];
    const had = out[name];
    out[name] = had === undefined ? v : ([] as string[]).concat(had, v);
  }
  return out;
}

t.test('clientResponseHeaders: hop-by-hop and Connection-named headers dropped, ours set', async (t) => {
  const cases: Array<{ name: string; upstream: http.IncomingHttpHeaders; keepAlive: boolean; id: string | undefined; want: http.OutgoingHttpHeaders }> = [
    {
      name: 'plain response',
      upstream: { 'content-type': 'text/plain', 'content-length': '2', connection: 'keep-alive', 'keep-alive': 'timeout=5' },
      keepAlive: true,
      id: 'rid',
      want: { 'content-type': 'text/plain', 'content-length': '2', connection: 'keep-alive', 'x-request-id': 'rid' },
    },
    {
      name: 'every hop-by-hop header',
      upstream: { 'proxy-connection': 'x', te: 'trailers', trailer: 'x-t', 'transfer-encoding': 'chunked', upgrade: 'h2c', 'proxy-authenticate': 'Basic', etag: '"1"' },
      keepAlive: false,
      id: 'rid',
      want: { etag: '"1"', connection: 'close', 'x-request-id': 'rid' },
    },
    {
      name: 'headers named in Connection, any case and spacing',
      upstream: { connection: 'close, X-Secret ,x-other', 'x-secret': 's', 'x-other': 'o', 'x-kept': 'k' },
      keepAlive: true,
      id: undefined,
      want: { 'x-kept': 'k', connection: 'keep-alive' },
    },
    {
      name: 'repeated Set-Cookie kept as a list; the upstream cannot choose the request id',
      upstream: { 'set-cookie': ['a=1', 'b=2'], 'x-request-id': 'from-upstream' },
      keepAlive: true,
      id: 'rid',
      want: { 'set-cookie': ['a=1', 'b=2'], 'x-request-id': 'rid', connection: 'keep-alive' },
    },
  ];
  for (const c of cases) t.same(asObject(clientResponseHeaders(raw(c.upstream), c.keepAlive, c.id)), c.want, c.name);
});

t.test('through the proxy: status, headers and body reach the client; the pool follows the keep-alive hint', async (t) => {
  let closedAfter = -1;
  let answeredAt = 0;
  let connections = 0;
  const upstream = http.createServer((req, res) => {
    req.resume();
    res.writeHead(201, 'Made', [['set-cookie', 'a=1'], ['set-cookie', 'b=2'], ['connection', 'x-drop'], ['x-drop', 'no'], ['keep-alive', 'timeout=3']]);
    res.end('made');
    answeredAt = performance.now();
  });
  upstream.on('connection', (s) => {
    connections++;
    s.once('close', () => void (closedAfter = performance.now() - answeredAt));
  });
  upstream.keepAliveTimeout = 3000;
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => { upstream.closeAllConnections(); upstream.close(() => r()); }));
  const ups = createUpstreams({ api: { url: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`, timeout: 5000, connectTimeout: 5000, maxSockets: 4 } });
  const api = ups.get('api')!;
  const proxy = new Proxy();
  const gateway = http.createServer((req, res) => {
    proxy.web(req, res, api, ['host', req.headers.host!], 'req-1', () => { res.statusCode = 502; res.end(); });
  });
  await new Promise<void>((r) => gateway.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => { proxy.close(); closeUpstreams(ups); gateway.closeAllConnections(); gateway.close(() => r()); }));

  const get = async () => {
    const res = await new Promise<http.IncomingMessage>((r) => http.get(`http://127.0.0.1:${(gateway.address() as AddressInfo).port}/x`, r));
    let body = '';
    for await (const c of res) body += c;
    return { res, body };
  };
  const { res, body } = await get();
  t.equal(res.statusCode, 201);
  t.equal(res.statusMessage, 'Made');
  t.equal(body, 'made');
  t.same(res.headers['set-cookie'], ['a=1', 'b=2'], 'both cookies');
  t.equal(res.headers['x-drop'], undefined, 'a header the upstream named in Connection is not forwarded');
  t.equal(res.headers['keep-alive'], undefined);
  t.equal(res.headers['x-request-id'], 'req-1');
  t.equal(res.headers['connection'], 'keep-alive');

  await get();
  t.equal(connections, 1, 'the second request reused the pooled connection');
  // The pooled connection follows the upstream's announced idle timeout (3 s, less the
  // pool's 1 s margin), not only the pool's own, so it is not reused just as the upstream closes it.
  await new Promise((r) => setTimeout(r, 2_600));
  t.ok(closedAfter >= 1_500 && closedAfter < 2_600, `the pool closed the idle connection first (${Math.round(closedAfter)} ms after the answer)`);
});
