import t from 'tap';
import { request } from 'undici';
import { parseConfig } from '../../src/config/load.js';
import { startPortcullis } from '../../src/gateway.js';
import { memoryLogger } from '../helpers/gateway.js';
import { startUpstream } from '../helpers/upstream.js';

// Per-key rate limits and usage credits, end to end on the embedded store: what the
// upstream received is counted, not only what clients saw. The route has no policy of its
// own, so everything limited here is the key's.

const up = await startUpstream();
t.teardown(() => up.close());
const loaded = parseConfig(`
upstreams: { api: { url: "${up.url}" } }
store: { url: "sqlite://memory" }
admin: { token: "admin-token-for-key-limits" }
roles: [basic]
routes:
  - match: { path: "/**" }
    minRole: basic
    upstream: api
`, 'key-limits.yaml', {});
const p = await startPortcullis(loaded, { logger: memoryLogger().logger, listen: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 } });
t.teardown(() => p.close(100));
const gw = p.gateway!.url();
const admin = `http://127.0.0.1:${p.adminAddress!.port}/admin/v1`;
const auth = { authorization: 'Bearer admin-token-for-key-limits', 'content-type': 'application/json' };

interface Answer {
  status: number;
  code: string | undefined;
  headers: Record<string, string | string[] | undefined>;
}

async function call(key: string): Promise<Answer> {
  const r = await request(`${gw}/things`, { headers: { 'x-api-key': key } });
  const body = await r.body.text();
  const code = r.statusCode >= 400 ? (JSON.parse(body) as { code?: string }).code : undefined;
  return { status: r.statusCode, code, headers: r.headers };
}
async function send<T>(method: 'POST' | 'PATCH', url: string, body: unknown): Promise<{ status: number; body: T }> {
  const r = await request(url, { method, headers: auth, body: JSON.stringify(body) });
  return { status: r.statusCode, body: (await r.body.json()) as T };
}
const forwarded = (...ids: string[]) => up.seen.filter((s) => ids.includes(String(s.headers['x-auth-key-id']))).length;

interface Created {
  id: string;
  key: string;
  refreshToken?: string;
  remaining: number | null;
  rateLimit: { limit: number; window: number } | null;
}

t.test('--uses 5 forwards exactly 5, then 429 quota-exhausted; a refill gives more', async (t) => {
  const k = (await send<Created>('POST', `${admin}/keys`, { subject: 'uses', role: 'basic', uses: 5 })).body;
  t.equal(k.remaining, 5);
  const answers = [];
  for (let i = 0; i < 7; i++) answers.push(await call(k.key));
  t.same(answers.map((a) => a.status), [200, 200, 200, 200, 200, 429, 429]);
  t.equal(answers[5]!.code, 'quota-exhausted');
  t.equal(forwarded(k.id), 5, 'the upstream saw exactly 5');
  const listed = (await (await request(`${admin}/keys?subject=uses`, { headers: auth })).body.json()) as Created[];
  t.equal(listed[0]!.remaining, 0, 'listed with none left');
  const refill = await send<Created>('PATCH', `${admin}/keys/${k.id}`, { uses: 2 });
  t.same([refill.status, refill.body.remaining], [200, 2]);
  t.same([(await call(k.key)).status, (await call(k.key)).status, (await call(k.key)).status], [200, 200, 429], 'refilled: two more');
  t.equal(forwarded(k.id), 7);
});

t.test('concurrent requests spend the credits exactly', async (t) => {
  const k = (await send<Created>('POST', `${admin}/keys`, { subject: 'burst', role: 'basic', uses: 7 })).body;
  const answers = await Promise.all(Array.from({ length: 30 }, () => call(k.key)));
  t.equal(answers.filter((a) => a.status === 200).length, 7, '7 admitted');
  t.equal(answers.filter((a) => a.code === 'quota-exhausted').length, 23, 'the rest refused');
  t.equal(forwarded(k.id), 7, 'and the upstream saw 7');
});

t.test('rotation keeps the credits: the lineage shares them', async (t) => {
  const k = (await send<Created>('POST', `${admin}/keys`, { subject: 'rot', role: 'basic', uses: 4 })).body;
  t.same([(await call(k.key)).status, (await call(k.key)).status], [200, 200]);
  const next = (await send<Created>('POST', `${admin}/keys/${k.id}/rotate`, { grace: '1h' })).body;
  t.equal(next.remaining, 2, 'the successor shows what is left');
  t.same([(await call(next.key)).status, (await call(k.key)).status], [200, 200], 'successor and old key in its grace spend one counter');
  t.equal((await call(next.key)).code, 'quota-exhausted');
  t.equal((await call(k.key)).code, 'quota-exhausted');
  t.equal(forwarded(k.id, next.id), 4);
});

t.test('refresh keeps the credits', async (t) => {
  const k = (await send<Created>('POST', `${admin}/keys`, { subject: 'ref', role: 'basic', refreshable: true, uses: 3 })).body;
  t.equal((await call(k.key)).status, 200);
  const r = await request(`${gw}/.portcullis/refresh`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ refreshToken: k.refreshToken }) });
  const fresh = (await r.body.json()) as { key: string; id: string };
  t.equal(r.statusCode, 200);
  t.same([(await call(fresh.key)).status, (await call(fresh.key)).status, (await call(fresh.key)).code], [200, 200, 'quota-exhausted'], 'two left after the refresh, not three');
  t.equal(forwarded(k.id, fresh.id), 3);
});

t.test('a key without credits gains them with keys update, on a cached identity', async (t) => {
  const k = (await send<Created>('POST', `${admin}/keys`, { subject: 'later', role: 'basic' })).body;
  t.equal(k.remaining, null, 'unlimited');
  t.same([(await call(k.key)).status, (await call(k.key)).status], [200, 200], 'cached now');
  t.equal((await send<Created>('PATCH', `${admin}/keys/${k.id}`, { uses: 1 })).body.remaining, 1);
  t.same([(await call(k.key)).status, (await call(k.key)).code], [200, 'quota-exhausted'], 'the cached identity was dropped and read again');
  t.equal((await send<Created>('PATCH', `${admin}/keys/${k.id}`, { uses: null })).body.remaining, null, 'uses null: unlimited again');
  t.equal((await call(k.key)).status, 200);
});

t.test("a key's own rate limit applies on a route without policies, with headers", async (t) => {
  const k = (await send<Created>('POST', `${admin}/keys`, { subject: 'rl', role: 'basic', rateLimit: '2/1h', uses: 10 })).body;
  t.same(k.rateLimit, { limit: 2, window: 3_600_000 });
  const a = await call(k.key);
  t.equal(a.status, 200);
  t.equal(a.headers['ratelimit-policy'], '"key";q=2;w=3600', 'RateLimit-Policy names the key limit');
  t.match(String(a.headers.ratelimit), /^"key";r=1;t=0$/);
  t.equal((await call(k.key)).status, 200);
  const refused = await call(k.key);
  t.same([refused.status, refused.code], [429, 'rate-limited']);
  t.ok(refused.headers['retry-after'], 'with Retry-After');
  t.equal(forwarded(k.id), 2);
  const listed = (await (await request(`${admin}/keys?subject=rl`, { headers: auth })).body.json()) as Created[];
  t.equal(listed[0]!.remaining, 8, 'a request the rate limit refused spends no credit');
  const next = (await send<Created>('POST', `${admin}/keys/${k.id}/rotate`, { grace: '0s' })).body;
  t.same(next.rateLimit, { limit: 2, window: 3_600_000 }, 'the successor has the same limit');
  t.equal((await call(next.key)).code, 'rate-limited', 'and the same bucket');
  const off = await send<Created>('PATCH', `${admin}/keys/${next.id}`, { rateLimit: null });
  t.equal(off.body.rateLimit, null);
  const after = await call(next.key);
  t.equal(after.status, 200, 'rateLimit null: none');
  t.equal(after.headers['ratelimit-policy'], undefined, 'and no RateLimit headers');
});

t.test('bad limits are refused as invalid-argument', async (t) => {
  for (const body of [{ rateLimit: '0/1m' }, { rateLimit: '10/1x' }, { rateLimit: 5 }, { uses: -1 }, { uses: 1.5 }]) {
    const r = await send<{ code: string }>('POST', `${admin}/keys`, { subject: 'bad', role: 'basic', ...body });
    t.same([r.status, r.body.code], [400, 'invalid-argument'], JSON.stringify(body));
  }
});

t.test('the policy name "key" is reserved for keys\' own limits', async (t) => {
  t.throws(() => parseConfig(`
upstreams: { api: { url: "${up.url}" } }
store: { url: "sqlite://memory" }
rateLimits:
  policies:
    - { name: key, limit: 1, window: 1m }
routes:
  - match: { path: "/**" }
    public: true
    upstream: api
`, 'reserved.yaml', {}), /reserved for per-key rate limits/);
});
