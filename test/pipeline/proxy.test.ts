import t from 'tap';
import { Readable } from 'node:stream';
import { request } from 'undici';
import WebSocket from 'ws';
import { startUpstream } from '../helpers/upstream.js';
import { startTestGateway } from '../helpers/gateway.js';
import { rawGet, rawRequest } from '../helpers/raw.js';

const up = await startUpstream();
t.teardown(() => up.close());

const yaml = (upstreamUrl: string, extra = '') => `
upstreams:
  api: { url: "${upstreamUrl}", timeout: 1s }
roles: [basic, premium, admin]
log: { level: silent }
${extra}
routes:
  - match: { path: /health, methods: [GET] }
    public: true
    upstream: api
  - match: { path: /ws }
    minRole: basic
    upstream: api
  - match: { path: "/admin/**" }
    minRole: admin
    upstream: api
  - match: { path: "/slow/**" }
    public: true
    upstream: api
  - match: { path: "/cut/**" }
    public: true
    upstream: api
  - match: { path: "/big/**" }
    minRole: basic
    upstream: api
  - match: { path: "/films/*/reviews", methods: [POST] }
    minRole: premium
    scopes: [reviews:write]
    upstream: api
  - match: { path: "/app/**" }
    minRole: basic
    upstream: api
`;

const table = {
  'basic-key': { subject: 'alice', role: 'basic', scopes: ['read'] },
  'premium-key': { subject: 'bob', role: 'premium', scopes: ['reviews:write'] },
  'admin-key': { subject: 'root', role: 'admin', scopes: [] },
};
const g = await startTestGateway(yaml(up.url), { table });
t.teardown(() => g.close());
const port = Number(new URL(g.url).port);

function lastSeen() {
  return up.seen[up.seen.length - 1]!;
}

t.test('problem+json responses', async (t) => {
  const r = await request(`${g.url}/nowhere`);
  t.equal(r.statusCode, 404);
  t.equal(r.headers['content-type'], 'application/problem+json');
  const body = (await r.body.json()) as Record<string, unknown>;
  t.equal(body.code, 'route-not-found');
  t.equal(body.status, 404);
  t.equal(body.type, 'urn:portcullis:problem:route-not-found');
  t.equal(body.requestId, r.headers['x-request-id'], 'requestId in body and header');
  const m = await request(`${g.url}/app/x`);
  t.equal(m.statusCode, 401);
  t.equal(m.headers['www-authenticate'], 'Bearer realm="portcullis"', 'no error code when no credential was sent (RFC 6750 §3.1)');
  t.equal(((await m.body.json()) as { code: string }).code, 'token-missing');
  const bad = await request(`${g.url}/app/x`, { headers: { authorization: 'Bearer nope' } });
  t.equal(bad.statusCode, 401);
  t.match(bad.headers['www-authenticate'], /^Bearer realm="portcullis", error="invalid_token"/);
  await bad.body.dump();
  const forbidden = await request(`${g.url}/admin/x`, { headers: { authorization: 'Bearer basic-key' } });
  t.equal(forbidden.statusCode, 403);
  t.match(forbidden.headers['www-authenticate'], /error="insufficient_scope"/);
  t.equal(((await forbidden.body.json()) as { code: string }).code, 'authorisation-required');
});

t.test('the normalized path is the one matched and the one the upstream receives', async (t) => {
  // [raw target, status, path the upstream must have received (when forwarded)]
  const cases: Array<[string, number, string?]> = [
    ['/health', 200, '/health'],
    ['/health?x=1&y=%2F', 200, '/health?x=1&y=%2F'],
    ['//health', 200, '/health'],
    ['/./health', 200, '/health'],
    ['/app/../health', 200, '/health'],
    ['/%68ealth', 200, '/health'],
    ['/app/x/%2e%2e/y', 200, '/app/y'],
    ['/app//x///y', 200, '/app/x/y'],
    ['/app/%7Euser', 200, '/app/~user'],
    ['/app/caf%c3%a9', 200, '/app/caf%C3%A9'],
    // These normalize onto the admin route and must be judged by it (basic key → 403).
    ['/%61dmin/users', 403],
    ['/app/../admin/users', 403],
    ['/app/%2e%2e/admin/users', 403],
    ['//admin//users', 403],
    ['/./admin/./users', 403],
    ['/ADMIN/x/../../admin/users', 403],
    // Refused outright.
    ['/admin%2fusers', 400],
    ['/app/..%2fadmin', 400],
    ['/app\\..\\admin', 400],
    ['/app/%5c../admin', 400],
    ['/app/%00', 400],
    ['/../admin', 400],
    ['/app/%zz', 400],
    ['/app;jsessionid=1', 400],
    ['http://evil.example/admin/users', 400],
    ['*', 400],
    ['/app/%c0%ae%c0%ae/admin', 400],
  ];
  for (const [target, status, upstreamPath] of cases) {
    const before = up.seen.length;
    const r = await rawGet(port, target, ['Authorization: Bearer basic-key']);
    t.equal(r.status, status, `${target} → ${status} (${r.body.slice(0, 120)})`);
    if (upstreamPath !== undefined) {
      t.equal(up.seen.length, before + 1, `${target} reached the upstream once`);
      t.equal(lastSeen().url, upstreamPath, `${target} reached the upstream as ${upstreamPath}`);
    } else {
      t.equal(up.seen.length, before, `${target} never reached the upstream`);
    }
  }
});

t.test('no client-supplied identity header ever reaches the upstream', async (t) => {
  const spoof = ['X-Auth-Subject: mallory', 'x-auth-role: admin', 'X-AUTH-SCOPES: everything', 'X-Auth-Key-Id: k1', 'X-Auth-Method: jwt', 'X-Auth-Assertion: forged', 'X-Auth-Other: z'];
  for (const [name, target, creds] of [
    ['public route', '/health', []],
    ['protected route', '/app/x', ['Authorization: Bearer basic-key']],
  ] as const) {
    const r = await rawGet(port, target, [...creds, ...spoof]);
    t.equal(r.status, 200, name);
    const h = lastSeen().headers;
    t.equal(h['x-auth-other'], undefined, `${name}: namespace header stripped`);
    t.equal(h['x-auth-assertion'], undefined, `${name}: assertion header stripped`);
    if (name === 'public route') {
      for (const k of ['x-auth-subject', 'x-auth-role', 'x-auth-scopes', 'x-auth-key-id', 'x-auth-method']) t.equal(h[k], undefined, `${name}: ${k} absent`);
    } else {
      t.equal(h['x-auth-subject'], 'alice');
      t.equal(h['x-auth-role'], 'basic');
      t.equal(h['x-auth-scopes'], 'read');
      t.equal(h['x-auth-method'], 'apiKey');
      t.equal(h['authorization'], undefined, 'credential not forwarded');
      const raw = lastSeen().rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
      t.equal(raw.filter((n) => n === 'x-auth-subject').length, 1, 'exactly one subject header line');
    }
  }
  // Underscore variants are refused before anything else (some servers fold _ into -).
  const u = await rawGet(port, '/app/x', ['Authorization: Bearer basic-key', 'X_Auth_Subject: mallory']);
  t.equal(u.status, 400, 'x_auth_subject refused');
  const u2 = await rawGet(port, '/health', ['x-auth_role: admin']);
  t.equal(u2.status, 400, 'x-auth_role refused on a public route too');
  // Connection-named headers are hop-by-hop and dropped; naming an identity header there is refused.
  const c = await rawRequest(port, 'GET /app/x HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer basic-key\r\nX-Custom: 1\r\nConnection: close, X-Custom\r\n\r\n');
  t.equal(c.status, 200);
  t.equal(lastSeen().headers['x-custom'], undefined, 'header named in Connection dropped');
  t.equal(lastSeen().headers['x-auth-role'], 'basic', 'identity header set by the gateway');
  const named = await rawRequest(port, 'GET /app/x HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer basic-key\r\nConnection: close, X-Auth-Role\r\n\r\n');
  t.equal(named.status, 400, 'an identity header named in Connection is refused');
  // Duplicate Authorization is ambiguous.
  const d = await rawGet(port, '/app/x', ['Authorization: Bearer basic-key', 'Authorization: Bearer admin-key']);
  t.equal(d.status, 400, 'duplicate Authorization refused');
  // Two different credentials in one request.
  const two = await rawGet(port, '/app/x', ['Authorization: Bearer basic-key', 'X-Api-Key: admin-key']);
  t.equal(two.status, 400, 'two credentials refused');
});

t.test('forwarding headers are replaced for untrusted peers', async (t) => {
  const r = await rawGet(port, '/app/x', ['Authorization: Bearer basic-key', 'X-Forwarded-For: 1.2.3.4', 'X-Real-IP: 1.2.3.4', 'Forwarded: for=1.2.3.4', 'X-Forwarded-Host: evil', 'X-Forwarded-Proto: https', 'X-Original-URL: /admin/users', 'X-Rewrite-URL: /admin', 'X-HTTP-Method-Override: DELETE']);
  t.equal(r.status, 200);
  const h = lastSeen().headers;
  t.equal(h['x-forwarded-for'], '127.0.0.1');
  t.equal(h['x-forwarded-proto'], 'http');
  t.equal(h['x-forwarded-host'], 'localhost');
  for (const k of ['x-real-ip', 'forwarded', 'x-original-url', 'x-rewrite-url', 'x-http-method-override']) t.equal(h[k], undefined, `${k} removed`);
  t.ok(h['x-request-id'], 'request id forwarded');
});

t.test('trusted proxies keep their forwarding chain', async (t) => {
  const g2 = await startTestGateway(yaml(up.url, 'trustedProxies: [127.0.0.1/32]'), { table });
  t.teardown(() => g2.close());
  const p2 = Number(new URL(g2.url).port);
  const r = await rawGet(p2, '/app/x', ['Authorization: Bearer basic-key', 'X-Forwarded-For: 203.0.113.9', 'X-Forwarded-Proto: https']);
  t.equal(r.status, 200);
  const h = lastSeen().headers;
  t.equal(h['x-forwarded-for'], '203.0.113.9, 127.0.0.1');
  t.equal(h['x-forwarded-proto'], 'https');
  t.equal(g2.records.at(-1)?.clientIp, '203.0.113.9', 'client address taken from the trusted chain');
});

t.test('authorization by role and scope', async (t) => {
  const cases: Array<[string, string, string, number]> = [
    ['POST', '/films/1/reviews', 'basic-key', 403],
    ['POST', '/films/1/reviews', 'premium-key', 200],
    ['POST', '/films/1/reviews', 'admin-key', 403], // admin lacks the scope
    ['GET', '/admin/x', 'premium-key', 403],
    ['GET', '/admin/x', 'admin-key', 200],
    ['GET', '/app/x', 'admin-key', 200],
  ];
  for (const [method, path, key, status] of cases) {
    const r = await request(`${g.url}${path}`, { method: method as 'GET', headers: { 'x-api-key': key } });
    await r.body.dump();
    t.equal(r.statusCode, status, `${method} ${path} with ${key}`);
  }
});

t.test('upstream failures', async (t) => {
  const dead = await startUpstream();
  const deadUrl = dead.url;
  await dead.close();
  const g3 = await startTestGateway(yaml(deadUrl), { table });
  t.teardown(() => g3.close());
  const r = await request(`${g3.url}/health`);
  t.equal(r.statusCode, 502);
  t.equal(((await r.body.json()) as { code: string }).code, 'upstream-unavailable');
  const s = await request(`${g.url}/slow/3000`);
  t.equal(s.statusCode, 504);
  t.equal(((await s.body.json()) as { code: string }).code, 'upstream-timeout');
});

t.test('an upstream dying mid-body cuts the client response instead of leaving it hanging', async (t) => {
  const started = Date.now();
  let received = 0;
  const outcome = await request(`${g.url}/cut/x`).then(
    async (res) => {
      try {
        for await (const c of res.body) received += (c as Buffer).length;
        return 'complete';
      } catch {
        return 'cut';
      }
    },
    () => 'cut',
  );
  t.equal(outcome, 'cut', `the client sees the response cut short (got ${received} of 1000000 bytes)`);
  t.ok(Date.now() - started < 3000, 'and promptly');
  await new Promise((r) => setTimeout(r, 100));
});

t.test('client abort cancels the upstream request', async (t) => {
  const before = up.stats.aborted;
  const ac = new AbortController();
  const p = request(`${g.url}/slow/250`, { signal: ac.signal }).catch(() => undefined);
  await new Promise((r) => setTimeout(r, 50));
  ac.abort();
  await p;
  await new Promise((r) => setTimeout(r, 400));
  t.equal(up.stats.aborted, before + 1, 'upstream saw its request closed before it answered');
});

t.test('bodies stream both ways', async (t) => {
  const size = 8 * 1024 * 1024;
  const r = await request(`${g.url}/big/${size}`, { headers: { 'x-api-key': 'basic-key' } });
  let n = 0;
  for await (const c of r.body) n += (c as Buffer).length;
  t.equal(n, size, 'download streamed in full');
  const chunk = Buffer.alloc(65536, 7);
  async function* gen() { for (let i = 0; i < 128; i++) yield chunk; }
  const u = await request(`${g.url}/app/upload`, { method: 'POST', headers: { 'x-api-key': 'basic-key' }, body: Readable.from(gen()) });
  const j = (await u.body.json()) as { bodyBytes: number };
  t.equal(j.bodyBytes, 128 * 65536, 'chunked upload arrived in full');
});

t.test('websockets go through the same pipeline', async (t) => {
  const wsUrl = g.url.replace('http', 'ws') + '/ws';
  const denied = await new Promise<number>((resolve) => {
    const ws = new WebSocket(wsUrl);
    ws.on('unexpected-response', (_req, res) => resolve(res.statusCode!));
    ws.on('open', () => resolve(101));
    ws.on('error', () => {});
  });
  t.equal(denied, 401, 'handshake without credential refused');
  const ws = new WebSocket(wsUrl, { headers: { 'x-api-key': 'basic-key', 'x-auth-role': 'admin' } });
  const msg = await new Promise<string>((resolve, reject) => {
    ws.on('open', () => ws.send('hi'));
    ws.on('message', (m) => resolve(m.toString()));
    ws.on('error', reject);
  });
  ws.close();
  t.equal(msg, 'echo:hi');
  const hs = up.seen.filter((s) => s.method === 'WS').at(-1)!;
  t.equal(hs.headers['x-auth-subject'], 'alice');
  t.equal(hs.headers['x-auth-role'], 'basic', 'spoofed role replaced in the handshake');
});
