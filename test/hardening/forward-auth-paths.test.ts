import t from 'tap';
import { startTestGateway } from '../helpers/gateway.js';
import { exchangeRaw } from '../helpers/raw.js';
import { publicAdminBasic, startRawUpstream } from './raw-upstream.js';

// Forward-auth judges a request that another proxy then forwards with the client's own
// bytes (nginx passes `$request_uri` to the gateway and the raw URI to the application):
// unlike proxy mode, the gateway cannot make the upstream see the path it normalized. A
// path whose normalization changes its segments — a dot segment, raw or encoded, or an empty
// segment — is judged as one path and served as another: `/admin/..` is `/` to the gateway
// but `/admin/:id` with id ".." to a router that does not resolve dot segments, and
// `//public/admin/x` is `/public/admin/x` to the gateway but host "public", path `/admin/x`
// to an application that reads its target with `new URL(req.url, base)`.

const raw = await startRawUpstream();
t.teardown(() => raw.close());
const g = await startTestGateway(publicAdminBasic(raw.url, { adminPaths: ['admin'] }), { table: { 'basic-key': { subject: 'alice', role: 'basic', scopes: [] } } });
t.teardown(() => g.close());
const port = Number(new URL(g.url).port);

const verify = async (header: string, uri: string) => {
  const r = await exchangeRaw(port, `GET /.portcullis/verify HTTP/1.1\r\nHost: app.test\r\n${header}: ${uri}\r\nX-Api-Key: basic-key\r\nConnection: close\r\n\r\n`, { idleMs: 1000 });
  return r.responses[0];
};

t.test('an original URI that normalization would reshape is refused, not judged', async (t) => {
  const reshaped = [
    '/admin/..', '/admin/.', '/admin/%2e%2e', '/admin/.%2E', '/admin/%2E.', '/admin/x/../..', '/admin/../public/x',
    '/admin//..', '//public/admin/x', '/public//admin', '/public/./x', '/admin/..?next=/x',
  ];
  for (const header of ['X-Original-URI', 'X-Forwarded-Uri']) {
    for (const uri of reshaped) {
      const r = await verify(header, uri);
      t.equal(r?.status, 400, `${header}: ${uri} → 400`);
      t.equal(r?.headers['x-auth-subject'], undefined, `${header}: ${uri}: no identity answered`);
    }
  }
  t.equal(raw.requests.length, 0, 'forward-auth never proxies');
});

t.test('canonical original URIs are judged as before', async (t) => {
  const judged: Array<[string, number]> = [
    ['/admin/x', 403], ['/app/x', 200], ['/app/x/', 200], ['/public/x', 200], ['/app/x?next=//a/../b', 200], ['/app/%7Ex', 200], ['/app/..x/.y', 200],
  ];
  for (const [uri, status] of judged) {
    const r = await verify('X-Original-URI', uri);
    t.equal(r?.status, status, `${uri} → ${status}`);
  }
});

t.test('without a method header the check is judged by its own method (Envoy ext_authz); a repeated one is refused', async (t) => {
  const films = await startTestGateway(
    `
upstreams:
  api: { url: "${raw.url}", timeout: 2s }
roles: [basic, admin]
log: { level: silent }
routes:
  - match: { path: "/films/**", methods: [GET] }
    public: true
    upstream: api
  - match: { path: "/films/**", methods: [DELETE] }
    minRole: admin
    upstream: api
`,
    { table: { 'basic-key': { subject: 'alice', role: 'basic', scopes: [] } } },
  );
  t.teardown(() => films.close());
  const fport = Number(new URL(films.url).port);
  const check = async (head: string) => (await exchangeRaw(fport, `${head}Host: app.test\r\nX-Forwarded-Uri: /films/1\r\nX-Api-Key: basic-key\r\nConnection: close\r\n\r\n`, { idleMs: 1000 })).responses[0]?.status;
  t.equal(await check('GET /.portcullis/verify HTTP/1.1\r\n'), 200, 'GET: public');
  t.equal(await check('DELETE /.portcullis/verify HTTP/1.1\r\n'), 403, 'DELETE with no method header: judged as DELETE, admin only');
  t.equal(await check('DELETE /.portcullis/verify HTTP/1.1\r\nX-Forwarded-Method: DELETE\r\n'), 403, 'the header, when sent, decides');
  t.equal(await check('GET /.portcullis/verify HTTP/1.1\r\nX-Forwarded-Method: DELETE\r\n'), 403, 'nginx-style: a GET check naming DELETE');
  t.equal(await check('GET /.portcullis/verify HTTP/1.1\r\nX-Forwarded-Method: GET\r\nX-Forwarded-Method: DELETE\r\n'), 400, 'a repeated method header has no one reading');
  t.equal(raw.requests.length, 0, 'forward-auth never proxies');
});

t.test('a check is logged and counted with the method it judged, not its own', async (t) => {
  const n = g.records.length;
  const r = await exchangeRaw(port, 'GET /.portcullis/verify HTTP/1.1\r\nHost: app.test\r\nX-Original-URI: /app/x\r\nX-Original-Method: DELETE\r\nX-Api-Key: basic-key\r\nConnection: close\r\n\r\n', { idleMs: 1000 });
  t.equal(r.responses[0]?.status, 200);
  await new Promise((res) => setTimeout(res, 20));
  t.same(g.records.slice(n).map((x) => [x.method, x.route]), [['DELETE', '.portcullis/verify']], 'DELETE, as judged');
  const bad = await exchangeRaw(port, 'GET /.portcullis/verify HTTP/1.1\r\nHost: app.test\r\nX-Original-URI: /admin/x\r\nX-Original-Method: PUT\r\nX-Api-Key: basic-key\r\nConnection: close\r\n\r\n', { idleMs: 1000 });
  t.equal(bad.responses[0]?.status, 403);
  await new Promise((res) => setTimeout(res, 20));
  t.same(g.records.slice(n + 1).map((x) => [x.method, x.status]), [['PUT', 403]], 'a refusal too');
});

t.test('checks from a peer that is not a trusted proxy are warned about, once in a while', async (t) => {
  // Every client behind such a proxy has its address: one stranger's failed attempts would
  // refuse everyone not yet verified.
  const warning = (lines: string[]) => lines.filter((l) => l.includes('forward-auth check from a peer that is not in trustedProxies'));
  const before = warning(g.lines).length;
  for (let i = 0; i < 3; i++) await verify('X-Original-URI', '/app/x');
  const said = warning(g.lines);
  t.ok(said.length >= 1 && said.length <= before + 1, `warned at most once for these checks (${said.length})`);
  t.match(JSON.parse(said[said.length - 1]!), { level: 40, peer: '127.0.0.1' });
  const trusted = await startTestGateway(publicAdminBasic(raw.url, { head: 'trustedProxies: ["127.0.0.1/32"]' }), { table: { 'basic-key': { subject: 'alice', role: 'basic', scopes: [] } } });
  t.teardown(() => trusted.close());
  const r = await exchangeRaw(Number(new URL(trusted.url).port), 'GET /.portcullis/verify HTTP/1.1\r\nHost: app.test\r\nX-Original-URI: /app/x\r\nX-Api-Key: basic-key\r\nConnection: close\r\n\r\n', { idleMs: 1000 });
  t.equal(r.responses[0]?.status, 200);
  t.same(warning(trusted.lines), [], 'none from a trusted proxy');
});
