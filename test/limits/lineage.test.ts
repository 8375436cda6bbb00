import t from 'tap';
import { request } from 'undici';
import { parseConfig } from '../../src/config/load.js';
import { startPortcullis } from '../../src/gateway.js';
import { memoryLogger } from '../helpers/gateway.js';
import { startUpstream } from '../helpers/upstream.js';

// `by: credential` counts a key's lineage: its rotation successor and its refreshed
// descendants share the bucket, so neither rotation nor refresh resets a limit.

const up = await startUpstream();
t.teardown(() => up.close());
const loaded = parseConfig(`
upstreams: { api: { url: "${up.url}" } }
store: { url: "sqlite://memory" }
admin: { token: "admin-token-for-lineage" }
roles: [basic]
rateLimits:
  policies:
    - { name: per-key, limit: 4, window: 1h, by: credential }
routes:
  - match: { path: "/**" }
    minRole: basic
    rateLimit: [per-key]
    upstream: api
`, 'lineage.yaml', {});
const p = await startPortcullis(loaded, { logger: memoryLogger().logger, listen: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 } });
t.teardown(() => p.close(100));
const gw = p.gateway!.url();
const admin = `http://127.0.0.1:${p.adminAddress!.port}/admin/v1`;
const auth = { authorization: 'Bearer admin-token-for-lineage', 'content-type': 'application/json' };

async function call(key: string): Promise<number> {
  const r = await request(`${gw}/things`, { headers: { 'x-api-key': key } });
  await r.body.dump();
  return r.statusCode;
}
async function post<T>(url: string, body: unknown): Promise<T> {
  const r = await request(url, { method: 'POST', headers: auth, body: JSON.stringify(body) });
  return (await r.body.json()) as T;
}

t.test('a rotated key continues its bucket', async (t) => {
  const k = await post<{ id: string; key: string }>(`${admin}/keys`, { subject: 'rot', role: 'basic' });
  t.same([await call(k.key), await call(k.key), await call(k.key)], [200, 200, 200]);
  const next = await post<{ key: string }>(`${admin}/keys/${k.id}/rotate`, { grace: '1h' });
  t.equal(await call(next.key), 200, 'the successor gets what is left: one');
  t.equal(await call(next.key), 429, 'then it is refused: rotation did not reset the bucket');
  t.equal(await call(k.key), 429, 'and so is the old key in its grace');
});

t.test('a refreshed key continues its bucket', async (t) => {
  const k = await post<{ id: string; key: string; refreshToken: string }>(`${admin}/keys`, { subject: 'ref', role: 'basic', refreshable: true });
  t.same([await call(k.key), await call(k.key)], [200, 200]);
  const r = await request(`${gw}/.portcullis/refresh`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ refreshToken: k.refreshToken }) });
  const fresh = (await r.body.json()) as { key: string };
  t.equal(r.statusCode, 200);
  t.same([await call(fresh.key), await call(fresh.key), await call(fresh.key)], [200, 200, 429], 'two left after the refresh, not four');
});
