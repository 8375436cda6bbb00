import t from 'tap';
import { PassThrough } from 'node:stream';
import { request } from 'undici';
import { DomainError, GatewayError, PROBLEMS, respondOnSocket, toGatewayError, type DomainCode } from '../../src/http/problem.js';
import { KeyServiceError, type KeyServiceErrorCode } from '../../src/keys/service.js';
import { TokenServiceError } from '../../src/tokens/service.js';
import { StoreError } from '../../src/store/errors.js';
import { AdminServer } from '../../src/ops/admin.js';
import { startTestGateway } from '../helpers/gateway.js';

// One table, one mapping: every domain error class becomes exactly one problem code at the
// HTTP edge; anything unknown is 500 internal-error, on the data path and the admin API.
const KEY_CODES = { 'invalid-argument': 400, 'import-invalid': 400, 'not-found': 404, conflict: 409, 'refresh-invalid': 401, 'rate-limited': 429 } as const satisfies Record<KeyServiceErrorCode, number>;

const cases: Array<{ name: string; error: unknown; code: keyof typeof PROBLEMS }> = [
  ...Object.keys(KEY_CODES).map((c) => ({ name: `KeyServiceError ${c}`, error: new KeyServiceError(c as KeyServiceErrorCode, 'x'), code: c as DomainCode })),
  { name: 'TokenServiceError', error: new TokenServiceError('jti must be 1–1024 characters'), code: 'invalid-argument' },
  { name: 'StoreError store-unavailable', error: new StoreError('store-unavailable', 'down'), code: 'store-unavailable' },
  { name: 'StoreError conflict (not mapped by a service)', error: new StoreError('conflict', 'raced'), code: 'internal-error' },
  { name: 'StoreError migration-failed', error: new StoreError('migration-failed', 'bad'), code: 'internal-error' },
  { name: 'GatewayError', error: new GatewayError('key-revoked', 'x'), code: 'key-revoked' },
  { name: 'TypeError', error: new TypeError('boom'), code: 'internal-error' },
  { name: 'Error', error: new Error('boom'), code: 'internal-error' },
  { name: 'a thrown string', error: 'boom', code: 'internal-error' },
];

t.test('each error maps to one code, at that code\'s status', async (t) => {
  for (const c of cases) {
    const g = toGatewayError(c.error);
    t.equal(g.code, c.code, c.name);
    t.equal(g.status, PROBLEMS[c.code].status, `${c.name} status`);
    if (c.error instanceof DomainError) t.equal(g.cause, c.error, `${c.name} keeps its cause`);
  }
  for (const [code, status] of Object.entries(KEY_CODES)) t.equal(PROBLEMS[code as DomainCode].status, status, `${code} is in the one table`);
});

t.test('an import refusal carries its bad lines in the body', async (t) => {
  const g = toGatewayError(new KeyServiceError('import-invalid', '2 invalid line(s)', { problems: ['f:1 bad', 'f:2 bad'] }));
  t.same(g.problems, ['f:1 bad', 'f:2 bad']);
});

t.test('the socket form of respond writes the same problem', async (t) => {
  const socket = new PassThrough();
  let text = '';
  socket.on('data', (b: Buffer) => { text += b.toString(); });
  respondOnSocket(socket, new GatewayError('store-unavailable', 'down', { headers: { 'retry-after': '1' } }), 'rid');
  await new Promise((r) => socket.on('end', r));
  t.match(text, /^HTTP\/1\.1 503 Key store unavailable\r\n/);
  t.match(text, /\r\ncontent-type: application\/problem\+json\r\n/);
  t.match(text, /\r\nretry-after: 1\r\n/);
  t.match(text, /\r\nconnection: close\r\n\r\n\{/);
  t.equal(JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)).code, 'store-unavailable');
});

t.test('unknown errors are 500 internal-error on the data path', async (t) => {
  const gw = await startTestGateway(`
upstreams: { api: { url: "http://127.0.0.1:1" } }
routes:
  - match: { path: "/**" }
    upstream: api
`, { services: { authenticators: () => ({ apiKey: { kind: 'apiKey', authenticate: () => { throw new TypeError('bug'); } } }) } });
  t.teardown(() => gw.close());
  const r = await request(`${gw.url}/x`, { headers: { 'x-api-key': 'pcl_whatever' } });
  t.equal(r.statusCode, 500);
  t.equal(((await r.body.json()) as { code: string }).code, 'internal-error');
});

t.test('unknown errors are 500 internal-error on the admin API; domain errors by their code', async (t) => {
  const admin = new AdminServer({
    host: '127.0.0.1', port: 0, checks: () => [], authorize: () => true,
    routes: [
      { method: 'GET', pattern: '/admin/v1/bug', handler: async () => { throw new TypeError('bug'); } },
      { method: 'GET', pattern: '/admin/v1/missing', handler: async () => { throw new KeyServiceError('not-found', 'no key with id x'); } },
      { method: 'GET', pattern: '/admin/v1/jti', handler: async () => { throw new TokenServiceError('jti must be 1–1024 characters'); } },
    ],
  });
  const { port } = await admin.listen();
  t.teardown(() => admin.close());
  for (const [path, status, code] of [['bug', 500, 'internal-error'], ['missing', 404, 'not-found'], ['jti', 400, 'invalid-argument']] as const) {
    const r = await request(`http://127.0.0.1:${port}/admin/v1/${path}`);
    const body = (await r.body.json()) as { code: string; requestId: string };
    t.equal(r.statusCode, status, path);
    t.equal(r.headers['content-type'], 'application/problem+json');
    t.equal(body.code, code, path);
    t.equal(body.requestId, r.headers['x-request-id'], `${path}: one request id`);
  }
});
