import t from 'tap';
import { request } from 'undici';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { parseConfig } from '../../src/config/load.js';
import { startPortcullis } from '../../src/gateway.js';
import { startUpstream } from '../helpers/upstream.js';
import { memoryLogger } from '../helpers/gateway.js';
import { rawRequest } from '../helpers/raw.js';

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
const gw = p.gateway!.url();
const admin = `http://127.0.0.1:${p.adminAddress!.port}`;

async function json(url: string, init: Parameters<typeof request>[1] = {}) {
  const r = await request(url, init);
  const text = await r.body.text();
  return { status: r.statusCode, headers: r.headers, body: text ? JSON.parse(text) : undefined };
}

t.test('health and readiness', async (t) => {
  t.same(await json(`${admin}/healthz`), { status: 200, headers: (await json(`${admin}/healthz`)).headers, body: { status: 'ok' } });
  const ready = await json(`${admin}/readyz`);
  t.equal(ready.status, 200);
  t.same(ready.body.checks, { store: true, revocation: true, jwks: true, rateLimits: true });
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

t.test('the admin listener answers only Host names it expects (DNS rebinding)', async (t) => {
  const port = p.adminAddress!.port;
  for (const host of [`127.0.0.1:${port}`, '127.0.0.1', `localhost:${port}`, 'LOCALHOST.', '[::1]', `[::1]:${port}`, '10.0.0.7:9090']) {
    const r = await rawRequest(port, `GET /healthz HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
    t.equal(r.status, 200, `Host: ${host}`);
  }
  for (const host of ['evil.example', `evil.example:${port}`, 'localhost.evil.example', '127.0.0.1.nip.io', '']) {
    for (const path of ['/healthz', '/metrics', '/admin/v1/keys']) {
      const r = await rawRequest(port, `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer admin-secret-token\r\nConnection: close\r\n\r\n`);
      t.equal(r.status, 400, `Host: ${JSON.stringify(host)} ${path} refused`);
      t.equal(r.headers['content-type'], 'application/problem+json');
      t.notMatch(r.body, /portcullis_requests_total|"subject"/, 'nothing of the listener leaks');
    }
  }
  const listed = await startPortcullis(parseConfig(`
upstreams: { api: { url: "${up.url}" } }
store: { url: "sqlite://memory" }
admin: { allowedHosts: [Portcullis-Admin.internal] }
roles: [basic]
routes: [{ match: { path: "/**" }, minRole: basic, upstream: api }]
`, 'admin-hosts.yaml', {}), { logger: memoryLogger().logger, listen: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 } });
  t.teardown(() => listed.close(100));
  const ok = await rawRequest(listed.adminAddress!.port, 'GET /healthz HTTP/1.1\r\nHost: portcullis-admin.internal:9090\r\nConnection: close\r\n\r\n');
  t.equal(ok.status, 200, 'a host in admin.allowedHosts is answered, in any case and with a port');
  const other = await rawRequest(listed.adminAddress!.port, 'GET /healthz HTTP/1.1\r\nHost: other.internal\r\nConnection: close\r\n\r\n');
  t.equal(other.status, 400);
});

t.test('admin API errors are problem+json; a malformed path is 400', async (t) => {
  const auth = { authorization: 'Bearer admin-secret-token', 'content-type': 'application/json' };
  const missing = await json(`${admin}/admin/v1/keys/nosuchkey0000/revoke`, { method: 'POST', headers: auth, body: '{}' });
  t.equal(missing.status, 404);
  t.match(missing.headers['content-type'], /^application\/problem\+json/);
  t.match(missing.body, { type: 'urn:portcullis:problem:not-found', status: 404, code: 'not-found', title: String });
  t.match(missing.body.requestId, /^[0-9a-f-]{36}$/);
  const invalid = await json(`${admin}/admin/v1/keys`, { method: 'POST', headers: auth, body: JSON.stringify({ subject: 'x', role: 'basic', scopes: 'read' }) });
  t.equal(invalid.status, 400);
  t.match(invalid.body, { code: 'invalid-argument', detail: /scopes must be a list/ });
  const notJson = await json(`${admin}/admin/v1/keys`, { method: 'POST', headers: auth, body: '{' });
  t.equal(notJson.status, 400);
  t.equal(notJson.body.code, 'bad-request');
  const badImport = await json(`${admin}/admin/v1/keys/import`, { method: 'POST', headers: auth, body: JSON.stringify({ content: '{"key":"x"}\nnot json\n' }) });
  t.equal(badImport.status, 400);
  t.equal(badImport.body.code, 'import-invalid');
  t.ok(Array.isArray(badImport.body.problems) && badImport.body.problems.length > 0, 'every bad line listed');
  const malformed = await rawRequest(p.adminAddress!.port, 'POST /admin/v1/keys/%E0%A4%A/revoke HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer admin-secret-token\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
  t.equal(malformed.status, 400, 'malformed percent-encoding in the path');
  t.equal(JSON.parse(malformed.body).code, 'bad-request');
  const noRoute = await json(`${admin}/admin/v1/nothing`, { headers: auth });
  t.equal(noRoute.status, 404);
  t.equal(noRoute.body.code, 'route-not-found');
});

t.test('refresh, logout and verify are logged and counted under their own route', async (t) => {
  const auth = { authorization: 'Bearer admin-secret-token', 'content-type': 'application/json' };
  const created = await json(`${admin}/admin/v1/keys`, { method: 'POST', headers: auth, body: JSON.stringify({ subject: 'svc-r', role: 'basic', refreshable: true }) });
  const badCookie = await rawRequest(Number(new URL(gw).port), 'POST /.portcullis/refresh HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: portcullis_refresh=%E0%A4%A\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
  t.equal(badCookie.status, 400, 'a malformed refresh cookie is 400');
  t.equal(JSON.parse(badCookie.body).code, 'bad-request');
  const refreshed = await json(`${gw}/.portcullis/refresh`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ refreshToken: created.body.refreshToken }) });
  t.equal(refreshed.status, 200);
  const verified = await json(`${gw}/.portcullis/verify`, { headers: { 'x-forwarded-uri': '/things', 'x-api-key': refreshed.body.key } });
  t.equal(verified.status, 200);
  const out = await request(`${gw}/.portcullis/logout`, { method: 'POST', headers: { 'x-api-key': refreshed.body.key } });
  await out.body.dump();
  t.equal(out.statusCode, 204);
  const logged = lines.map((l) => JSON.parse(l)).filter((l) => l.msg === 'request' && typeof l.route === 'string' && l.route.startsWith('.portcullis/'));
  const seen = logged.map((l) => `${l.route} ${l.status}${l.code ? ' ' + l.code : ''}`);
  for (const want of ['.portcullis/refresh 400 bad-request', '.portcullis/refresh 200', '.portcullis/verify 200', '.portcullis/logout 204']) t.ok(seen.includes(want), `logged: ${want}`);
  const metrics = await (await request(`${admin}/metrics`)).body.text();
  for (const [route, status] of [['.portcullis/refresh', '200'], ['.portcullis/refresh', '400'], ['.portcullis/verify', '200'], ['.portcullis/logout', '204']]) {
    t.match(metrics, new RegExp(`portcullis_requests_total\\{[^}]*route="${route.replace('.', '\\.')}"[^}]*status="${status}"[^}]*\\} 1`), `counted: ${route} ${status}`);
  }
});
