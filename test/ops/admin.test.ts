import t from 'tap';
import { request } from 'undici';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { parseConfig } from '../../src/config/load.js';
import { startPortcullis } from '../../src/server.js';
import { startUpstream } from '../helpers/upstream.js';
import { memoryLogger } from '../helpers/gateway.js';

// The admin listener of a whole Portcullis: health, readiness, metrics, the assertion JWKS,
// and the admin API (authenticated) acting on the same services as the CLI.
const up = await startUpstream();
t.teardown(() => up.close());
const loaded = parseConfig(`
upstreams: { api: { url: "${up.url}" } }
store: { url: "sqlite://memory" }
admin: { token: "admin-secret-token" }
roles: [basic, admin]
identity: { assertion: { header: x-auth-assertion, ttl: 60s } }
routes:
  - match: { path: /health }
    public: true
    upstream: api
  - match: { path: "/**" }
    minRole: basic
    upstream: api
`, 'admin.yaml', {});
const { logger, lines } = memoryLogger();
const p = await startPortcullis(loaded, { logger, listen: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 } });
t.teardown(() => p.close(100));
const gw = p.gateway.url();
const admin = `http://127.0.0.1:${p.adminAddress.port}`;

async function json(url: string, init: Parameters<typeof request>[1] = {}) {
  const r = await request(url, init);
  const text = await r.body.text();
  return { status: r.statusCode, headers: r.headers, body: text ? JSON.parse(text) : undefined };
}

t.test('health and readiness', async (t) => {
  t.same(await json(`${admin}/healthz`), { status: 200, headers: (await json(`${admin}/healthz`)).headers, body: { status: 'ok' } });
  const ready = await json(`${admin}/readyz`);
  t.equal(ready.status, 200);
  t.same(ready.body.checks, { store: true, revocation: true, jwks: true });
});

t.test('admin API needs the admin token', async (t) => {
  const none = await json(`${admin}/admin/v1/keys`);
  t.equal(none.status, 401);
  t.equal(none.body.code, 'token-missing');
  const wrong = await json(`${admin}/admin/v1/keys`, { headers: { authorization: 'Bearer nope' } });
  t.equal(wrong.status, 401);
  const ok = await json(`${admin}/admin/v1/keys`, { headers: { authorization: 'Bearer admin-secret-token' } });
  t.equal(ok.status, 200);
  t.same(ok.body, []);
});

t.test('a key created through the admin API works at the gateway; the upstream verifies the assertion', async (t) => {
  const auth = { authorization: 'Bearer admin-secret-token', 'content-type': 'application/json' };
  const created = await json(`${admin}/admin/v1/keys`, { method: 'POST', headers: auth, body: JSON.stringify({ subject: 'svc-1', role: 'basic', scopes: ['read'] }) });
  t.equal(created.status, 201);
  t.match(created.body.key, /^pcl_/);
  const bad = await json(`${admin}/admin/v1/keys`, { method: 'POST', headers: auth, body: JSON.stringify({ subject: 'x', role: 'root' }) });
  t.equal(bad.status, 400, 'unknown role refused');

  const r = await json(`${gw}/things`, { headers: { 'x-api-key': created.body.key, 'x-auth-assertion': 'forged' } });
  t.equal(r.status, 200);
  const h = up.seen.at(-1)!.headers;
  t.equal(h['x-auth-key-id'], created.body.id);
  const assertion = h['x-auth-assertion'] as string;
  t.not(assertion, 'forged', 'client-sent assertion replaced');
  const jwks = createRemoteJWKSet(new URL(`${admin}/.well-known/jwks.json`));
  const { payload, protectedHeader } = await jwtVerify(assertion, jwks, { issuer: 'portcullis', audience: 'api' });
  t.equal(protectedHeader.alg, 'EdDSA');
  t.equal(payload.sub, 'svc-1');
  t.equal(payload.role, 'basic');
  t.equal(payload.key_id, created.body.id);
  await t.rejects(jwtVerify(assertion, jwks, { issuer: 'portcullis', audience: 'other-upstream' }), 'assertion is bound to its upstream');

  const revoked = await json(`${admin}/admin/v1/keys/${created.body.id}/revoke`, { method: 'POST', headers: auth, body: '{}' });
  t.equal(revoked.status, 200);
  const after = await json(`${gw}/things`, { headers: { 'x-api-key': created.body.key } });
  t.equal(after.status, 401);
  t.equal(after.body.code, 'key-revoked');
});

t.test('metrics and logs', async (t) => {
  const r = await request(`${admin}/metrics`);
  const text = await r.body.text();
  t.match(r.headers['content-type'], /text\/plain/);
  t.match(text, /portcullis_requests_total\{[^}]*route="1:\/\*\*"[^}]*status="200"[^}]*\} [1-9]/);
  t.match(text, /portcullis_requests_total\{[^}]*code="key-revoked"[^}]*\} 1/);
  t.match(text, /portcullis_cache_hits_total\{kind="apiKey"\} \d+/);
  const line = lines.map((l) => JSON.parse(l)).find((l) => l.msg === 'request' && l.status === 200 && l.keyId);
  t.ok(line, 'a request log line with the key id');
  t.equal(line.subject.length, 32, 'subject logged as a keyed hash');
  t.not(line.subject, 'svc-1');
  const all = lines.join('\n');
  t.notMatch(all, /pcl_[A-Za-z0-9]+_[A-Za-z0-9]{20,}/, 'no key in the logs');
  t.notMatch(all, /admin-secret-token/, 'no admin token in the logs');
});
