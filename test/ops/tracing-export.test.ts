import t from 'tap';
import { request } from 'undici';
import { deadEndpoint, startCollector, startHangingCollector, type SpanSeen } from '../helpers/collector.js';
import { startTestGateway } from '../helpers/gateway.js';
import { parseConfig } from '../../src/config/load.js';
import { startUpstream } from '../helpers/upstream.js';

const TID = '0af7651916cd43dd8448eb211c80319c';
const PID = 'b7ad6b7169203331';
const KEY = 'sk-live-secret-123456';
const WRONG = 'sk-wrong-secret-999999';
const SERVER = 2;
const CLIENT = 3;

const up = await startUpstream();
t.teardown(() => up.close());

const yaml = (tracing: string) => `
upstreams: { api: { url: "${up.url}" } }
roles: [basic, admin]
log: { level: info }
tracing: ${tracing}
routes:
  - match: { path: "/pub/**" }
    public: true
    upstream: api
  - match: { path: "/api/**" }
    minRole: basic
    upstream: api
`;
const table = { [KEY]: { subject: 'alice@example.com', role: 'basic', keyId: 'key_k1' } };

async function send(url: string, headers: Record<string, string> = {}) {
  const r = await request(url, { headers, headersTimeout: 5_000, bodyTimeout: 5_000 });
  await r.body.dump();
  return r.statusCode;
}

async function until(cond: () => boolean, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

t.test('spans reach an OTLP/HTTP JSON collector in batches, with the attributes docs/reference/operations.md lists and no credential', async (t) => {
  const col = await startCollector();
  t.teardown(() => col.close());
  const gw = await startTestGateway(yaml(`{ otlp: { endpoint: "${col.endpoint}", headers: { x-collector-token: t0k } }, serviceName: edge-test, batchDelay: 100ms }`), { table });
  t.teardown(() => gw.close());

  const seenBefore = up.seen.length;
  t.equal(await send(`${gw.url}/api//items/./x?token=abc`, { authorization: `Bearer ${KEY}`, traceparent: `00-${TID}-${PID}-01` }), 200);
  const upstreamTp = up.seen[seenBefore]!.headers['traceparent'];
  t.equal(await send(`${gw.url}/api/y`, { 'x-api-key': KEY }), 200);
  t.equal(await send(`${gw.url}/api/z`), 401);
  t.equal(await send(`${gw.url}/api/z`, { authorization: `Bearer ${WRONG}` }), 401);
  t.equal(await send(`${gw.url}/pub/a`), 200);
  const records = gw.records.slice(-5);
  await until(() => col.spans.filter((s) => s.kind === SERVER).length >= 5);

  const server = (i: number): SpanSeen => col.spans.find((s) => s.kind === SERVER && s.traceId === records[i]!.trace!.traceId)!;
  const clientOf = (s: SpanSeen) => col.spans.find((c) => c.kind === CLIENT && c.parentSpanId === s.spanId);

  const first = server(0);
  t.match(first, { traceId: TID, parentSpanId: PID, service: 'edge-test', name: 'GET 1:/api/**' }, 'the caller\'s trace, continued');
  t.same(first.attributes, {
    'http.request.method': 'GET',
    'url.path': '/api/items/x',
    'http.route': '1:/api/**',
    'http.response.status_code': 200,
    'portcullis.decision': 'allow',
    'portcullis.key_id': 'key_k1',
  });
  const client = clientOf(first)!;
  t.ok(client, 'a client span for the upstream call');
  t.equal(client.traceId, TID);
  t.equal(upstreamTp, `00-${TID}-${client.spanId}-01`, 'the upstream\'s parent is the client span');
  t.equal(client.attributes['http.response.status_code'], 200);

  t.match(server(1).attributes, { 'portcullis.key_id': 'key_k1', 'http.response.status_code': 200 });
  t.not(server(1).traceId, TID, 'a request without traceparent starts its own trace');
  for (const [i, code] of [[2, 'token-missing'], [3, 'key-invalid']] as const) {
    t.match(server(i).attributes, { 'portcullis.decision': 'deny', 'portcullis.code': code, 'http.response.status_code': 401 }, code);
    t.equal(clientOf(server(i)), undefined, `${code}: no upstream call, no client span`);
  }
  t.notOk('portcullis.key_id' in server(4).attributes, 'a public route has no key');

  t.ok(col.posts.every((p) => p.url === '/v1/traces' && p.headers['content-type'] === 'application/json' && p.headers['x-collector-token'] === 't0k'), 'JSON to the endpoint, with the configured headers');
  t.ok(col.posts.length < col.spans.length, `batched: ${col.spans.length} spans in ${col.posts.length} posts`);
  const exported = col.posts.map((p) => p.body).join('\n');
  for (const secret of [KEY, WRONG, 'token=abc', 'alice']) t.notOk(exported.includes(secret), `never exported: ${secret}`);
});

t.test('sampleRatio 0 records no new trace, but a caller\'s sampled trace is still recorded', async (t) => {
  const col = await startCollector();
  t.teardown(() => col.close());
  const gw = await startTestGateway(yaml(`{ otlp: { endpoint: "${col.endpoint}" }, sampleRatio: 0, batchDelay: 50ms }`), { table });
  t.teardown(() => gw.close());
  for (let i = 0; i < 5; i++) t.equal(await send(`${gw.url}/pub/a`), 200);
  t.equal(await send(`${gw.url}/pub/b`, { traceparent: `00-${TID}-${PID}-01` }), 200);
  await until(() => col.spans.length >= 2);
  await new Promise((r) => setTimeout(r, 300));
  t.same(new Set(col.spans.map((s) => s.traceId)), new Set([TID]), 'only the sampled caller\'s trace');
  t.match(up.seen.at(-1)!.headers['traceparent'], new RegExp(`^00-${TID}-[0-9a-f]{16}-01$`));
});

t.test('a reload turns span export on and off', async (t) => {
  const col = await startCollector();
  t.teardown(() => col.close());
  const off = yaml('{}');
  const on = yaml(`{ otlp: { endpoint: "${col.endpoint}" }, batchDelay: 50ms }`);
  const gw = await startTestGateway(off, { table });
  t.teardown(() => gw.close());
  t.equal(await send(`${gw.url}/pub/before`), 200);
  await gw.reload(parseConfig(on, 'test.yaml', {}));
  t.equal(await send(`${gw.url}/pub/during`), 200);
  await until(() => col.spans.some((s) => s.attributes['url.path'] === '/pub/during'));
  await gw.reload(parseConfig(off, 'test.yaml', {}));
  t.equal(await send(`${gw.url}/pub/after`), 200);
  await new Promise((r) => setTimeout(r, 300));
  t.same(col.spans.filter((s) => s.kind === SERVER).map((s) => s.attributes['url.path']), ['/pub/during'], 'only the request served while export was on');
});

t.test('a collector that is down or hangs never slows or fails a request', async (t) => {
  const hanging = await startHangingCollector();
  t.teardown(() => hanging.close());
  const collectors: Array<[string, string]> = [['down', await deadEndpoint()], ['hanging', hanging.endpoint]];
  for (const [name, endpoint] of collectors) {
    // A 60 s export timeout: a request that waited on the collector would blow the 5 s bound.
    const gw = await startTestGateway(yaml(`{ otlp: { endpoint: "${endpoint}", timeout: 60s }, batchDelay: 20ms, maxQueueSize: 50 }`), { table });
    const statuses: number[] = [];
    const worker = async () => {
      for (let i = 0; i < 40; i++) statuses.push(await send(`${gw.url}/api/w${i}`, { 'x-api-key': KEY }));
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    t.equal(statuses.length, 320, `${name}: every request answered within the bound`);
    t.ok(statuses.every((s) => s === 200), `${name}: every request succeeded`);
    const closing = Date.now();
    await gw.close();
    t.ok(Date.now() - closing < 10_000, `${name}: shutting down does not wait on the collector`);
  }
  t.ok(hanging.connections() >= 1, 'the gateway did try the hanging collector');
});
