import t from 'tap';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Proxy, clientResponseHeaders, closeUpstreams, createUpstreams } from '../../src/proxy/upstreams.js';

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
  for (const c of cases) t.same(clientResponseHeaders(c.upstream, c.keepAlive, c.id), c.want, c.name);
});

t.test('through the proxy engine: status, headers and body reach the client; the keep-alive hint reaches the agent', async (t) => {
  const upstream = http.createServer((req, res) => {
    req.resume();
    res.writeHead(201, 'Made', [['set-cookie', 'a=1'], ['set-cookie', 'b=2'], ['connection', 'x-drop'], ['x-drop', 'no'], ['keep-alive', 'timeout=3']]);
    res.end('made');
  });
  upstream.keepAliveTimeout = 3000;
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => { upstream.closeAllConnections(); upstream.close(() => r()); }));
  const ups = createUpstreams({ api: { url: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`, timeout: 5000, connectTimeout: 5000, maxSockets: 4, engine: 'http-proxy' } });
  const api = ups.get('api')!;
  const proxy = new Proxy();
  const gateway = http.createServer((req, res) => {
    req.headers['x-request-id'] = 'req-1';
    proxy.web(req, res, api, () => { res.statusCode = 502; res.end(); });
  });
  await new Promise<void>((r) => gateway.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => { proxy.close(); closeUpstreams(ups); gateway.closeAllConnections(); gateway.close(() => r()); }));

  const res = await new Promise<http.IncomingMessage>((r) => http.get(`http://127.0.0.1:${(gateway.address() as AddressInfo).port}/x`, r));
  let body = '';
  for await (const c of res) body += c;
  t.equal(res.statusCode, 201);
  t.equal(res.statusMessage, 'Made');
  t.equal(body, 'made');
  t.same(res.headers['set-cookie'], ['a=1', 'b=2'], 'both cookies');
  t.equal(res.headers['x-drop'], undefined, 'a header the upstream named in Connection is not forwarded');
  t.equal(res.headers['keep-alive'], undefined);
  t.equal(res.headers['x-request-id'], 'req-1');
  t.equal(res.headers['connection'], 'keep-alive');

  // The pooled upstream socket follows the upstream's announced idle timeout (3 s, less the
  // agent's 1 s margin), not only the agent's own, so it is not reused just as the upstream closes it.
  await new Promise((r) => setImmediate(r));
  const free = Object.values(api.agent.freeSockets).flat();
  t.equal(free.length, 1, 'the upstream socket went back to the pool');
  t.equal(free[0]!.timeout, 2000);
});
