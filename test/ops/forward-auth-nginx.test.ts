import t from 'tap';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { startUpstream } from '../helpers/upstream.js';
import { startTestGateway } from '../helpers/gateway.js';
import { rawRequest } from '../helpers/raw.js';

const DEPLOY = new URL('../../deploy/nginx/', import.meta.url).pathname;

function findNginx(): string | undefined {
  for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/local/sbin', '/usr/local/nginx/sbin']) {
    const p = join(dir, 'nginx');
    if (dir !== '' && existsSync(p)) return p;
  }
  return undefined;
}

async function sparePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function waitForPort(port: number, child: ChildProcess, log: () => string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`nginx exited with ${child.exitCode}\n${log()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const c = net.connect(port, '127.0.0.1');
      c.once('connect', () => { c.destroy(); resolve(true); });
      c.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`nginx did not listen on ${port}\n${log()}`);
}

const gatewayYaml = (upstreamUrl: string) => `
upstreams:
  api: { url: "${upstreamUrl}", timeout: 2s }
roles: [basic, premium, admin]
log: { level: silent }
routes:
  - match: { path: /health, methods: [GET] }
    public: true
    upstream: api
  - match: { path: "/admin/**" }
    minRole: admin
    upstream: api
  - match: { path: "/films/*/reviews", methods: [POST] }
    minRole: premium
    scopes: [reviews:write]
    upstream: api
  - match: { path: "/films/**", host: films.example }
    minRole: basic
    upstream: api
  - match: { path: "/app/**" }
    minRole: basic
    upstream: api
  - match: { path: "/**", host: admin.example.com }
    minRole: admin
    upstream: api
  - match: { path: "/**", host: www.example.com }
    minRole: basic
    upstream: api
`;

const table = {
  'basic-key': { subject: 'alice', role: 'basic', scopes: ['read', 'list'], keyId: 'k-alice' },
  'premium-key': { subject: 'bob', role: 'premium', scopes: ['reviews:write'], keyId: 'k-bob' },
  'admin-key': { subject: 'root', role: 'admin', scopes: [] },
};

const up = await startUpstream();
t.teardown(() => up.close());
const g = await startTestGateway(gatewayYaml(up.url), { table });
t.teardown(() => g.close());
const verifyUrl = `${g.url}/.portcullis/verify`;

// The endpoint itself, as Traefik ForwardAuth and Envoy ext_authz (HTTP) call it: no nginx needed.
t.test('verify endpoint: statuses nginx cannot relay, asked directly', async (t) => {
  const cases: Array<[string, Record<string, string>, number, string]> = [
    ['no route', { 'x-original-uri': '/nowhere' }, 404, 'route-not-found'],
    ['no original URI at all', {}, 400, 'bad-request'],
    ['encoded slash in the original URI', { 'x-original-uri': '/app/a%2Fb' }, 400, 'bad-request'],
    ['dot-segments above the root', { 'x-original-uri': '/../../etc/passwd' }, 400, 'bad-request'],
    ['method the route does not take', { 'x-original-method': 'GET', 'x-original-uri': '/films/1/reviews', authorization: 'Bearer premium-key' }, 404, 'route-not-found'],
  ];
  for (const [name, headers, status, code] of cases) {
    const r = await request(verifyUrl, { headers });
    t.equal(r.statusCode, status, name);
    t.equal(r.headers['content-type'], 'application/problem+json', `${name}: problem+json`);
    t.equal(((await r.body.json()) as { code: string }).code, code, `${name}: ${code}`);
  }
});

t.test('verify endpoint: Traefik/Envoy style X-Forwarded-Method and X-Forwarded-Uri', async (t) => {
  const ask = async (method: string, uri: string, key?: string, extra: Record<string, string> = {}) => {
    const r = await request(verifyUrl, {
      headers: { 'x-forwarded-method': method, 'x-forwarded-uri': uri, 'x-forwarded-host': 'gw.example', ...(key ? { authorization: `Bearer ${key}` } : {}), ...extra },
    });
    const text = await r.body.text();
    return { status: r.statusCode, headers: r.headers, body: text ? (JSON.parse(text) as { code: string }) : undefined };
  };

  const ok = await ask('GET', '/app/list?page=2', 'basic-key');
  t.equal(ok.status, 200);
  t.equal(ok.headers['x-auth-subject'], 'alice');
  t.equal(ok.headers['x-auth-role'], 'basic');
  t.equal(ok.headers['x-auth-scopes'], 'read list');
  t.equal(ok.headers['x-auth-key-id'], 'k-alice');
  t.equal(ok.headers['x-auth-method'], 'apiKey');
  t.equal(ok.headers['cache-control'], 'no-store', 'answers must not be cached by the proxy');
  t.type(ok.headers['x-request-id'], 'string');

  const pub = await ask('GET', '/health');
  t.equal(pub.status, 200, 'public route: admitted without a credential');
  t.equal(pub.headers['x-auth-subject'], undefined, 'public route: no identity');
  const pubSpoof = await ask('GET', '/health', undefined, { 'x-auth-subject': 'mallory' });
  t.equal(pubSpoof.headers['x-auth-subject'], undefined, 'a client identity header is never echoed');

  // The method comes from X-Forwarded-Method, not from the verify request's own method.
  const post = await ask('POST', '/films/7/reviews', 'premium-key');
  t.equal(post.status, 200);
  t.equal(post.headers['x-auth-subject'], 'bob');
  const postBasic = await ask('POST', '/films/7/reviews', 'basic-key');
  t.equal(postBasic.status, 403);
  t.equal(postBasic.body?.code, 'authorisation-required');
  const getReviews = await ask('GET', '/films/7/reviews', 'premium-key');
  t.equal(getReviews.status, 404, 'GET does not match the POST-only route');
  const lower = await ask('post', '/films/7/reviews', 'premium-key');
  t.equal(lower.status, 200, 'the method is compared upper-cased');

  const none = await ask('GET', '/app/x');
  t.equal(none.status, 401);
  t.equal(none.body?.code, 'token-missing');
  t.equal(none.headers['www-authenticate'], 'Bearer realm="portcullis"');
  const wrong = await ask('GET', '/app/x', 'nope');
  t.equal(wrong.status, 401);
  t.equal(wrong.body?.code, 'key-invalid');
  t.match(wrong.headers['www-authenticate'], /error="invalid_token"/);

  // The forwarded URI is normalized like a proxied one, but the proxy forwards it as the
  // client sent it: a traversal is refused rather than judged as the path it resolves to.
  const trav = await ask('GET', '/app/../admin/x', 'basic-key');
  t.equal(trav.status, 400, '/app/../admin/x is refused');
  const enc = await ask('GET', '/%61dmin/x', 'basic-key');
  t.equal(enc.status, 403, '/%61dmin/x is judged as /admin/x');

  // Envoy's http_service appends the original path to path_prefix; a prefix ending in `?`
  // keeps the endpoint path intact while headers_to_add carries the URI.
  const envoy = await request(`${verifyUrl}?/app/x`, { method: 'POST', headers: { 'x-forwarded-method': 'GET', 'x-forwarded-uri': '/app/x', authorization: 'Bearer admin-key' } });
  await envoy.body.dump();
  t.equal(envoy.statusCode, 200, 'a query after the endpoint path is ignored');
  t.equal(envoy.headers['x-auth-subject'], 'root');
  t.equal(envoy.headers['x-auth-key-id'], undefined, 'no key id header when the identity has none');
});

const nginx = findNginx();
if (nginx === undefined) {
  if (process.env.CI === 'true') t.fail('nginx is not installed (CI installs nginx-light); the forward-auth test cannot run');
  else t.comment('skipping the nginx forward-auth test: nginx is not installed (apt-get install -y nginx-light)');
} else {
  t.test('nginx auth_request in front of an upstream, using deploy/nginx/*.conf', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'pcl-nginx-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    for (const d of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(join(dir, d));
    const port = await sparePort();
    const gwPort = Number(new URL(g.url).port);
    const conf = `
${process.getuid?.() === 0 ? 'user root root;' : ''}
daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream portcullis { server 127.0.0.1:${gwPort}; keepalive 8; }
  upstream app { server 127.0.0.1:${up.port}; }
  server {
    listen 127.0.0.1:${port};
    server_name localhost films.example;
    include ${DEPLOY}forward-auth.conf;
    location / {
      proxy_set_header Host $host;
      include ${DEPLOY}forward-auth-location.conf;
      proxy_pass http://app;
    }
  }
}
`;
    writeFileSync(join(dir, 'nginx.conf'), conf);
    const check = spawnSync(nginx, ['-t', '-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')], { encoding: 'utf8' });
    t.equal(check.status, 0, `nginx -t accepts the config\n${check.stderr}`);
    const child = spawn(nginx, ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d) => { stderr += d; });
    const log = () => `${stderr}\n${existsSync(join(dir, 'error.log')) ? readFileSync(join(dir, 'error.log'), 'utf8') : ''}`;
    t.teardown(
      () =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null) return resolve();
          child.once('exit', () => resolve());
          child.kill('SIGTERM');
        }),
    );
    await waitForPort(port, child, log);
    const base = `http://127.0.0.1:${port}`;

    const via = async (path: string, headers: Record<string, string> = {}, method: 'GET' | 'POST' = 'GET', body?: string) => {
      const before = up.seen.length;
      const r = await request(`${base}${path}`, { method, headers, body });
      const text = await r.body.text();
      return { status: r.statusCode, headers: r.headers, text, seen: up.seen.length > before ? up.seen[up.seen.length - 1] : undefined };
    };

    const none = await via('/app/x');
    t.equal(none.status, 401, 'no credential → 401');
    t.equal(none.headers['www-authenticate'], 'Bearer realm="portcullis"', "nginx relays the gateway's challenge");
    t.equal(none.seen, undefined, 'the upstream was not called');

    const wrong = await via('/app/x', { authorization: 'Bearer nope' });
    t.equal(wrong.status, 401, 'wrong key → 401');
    t.match(wrong.headers['www-authenticate'], /error="invalid_token"/);
    t.equal(wrong.seen, undefined);

    const forbidden = await via('/admin/x', { authorization: 'Bearer basic-key' });
    t.equal(forbidden.status, 403, 'basic key on an admin route → 403');
    t.equal(forbidden.seen, undefined);

    const ok = await via('/app/items?page=2', {
      authorization: 'Bearer basic-key',
      'x-auth-subject': 'mallory',
      'x-auth-role': 'admin',
      'x-auth-assertion': 'forged',
      'x-auth-key-id': 'k-root',
      x_auth_method: 'jwt',
    });
    t.equal(ok.status, 200, 'allowed → 200');
    t.ok(ok.seen, 'the upstream was called');
    const h = ok.seen!.headers;
    t.equal(ok.seen!.url, '/app/items?page=2');
    t.equal(h['x-auth-subject'], 'alice', 'subject from the gateway, not the client');
    t.equal(h['x-auth-role'], 'basic');
    t.equal(h['x-auth-scopes'], 'read list');
    t.equal(h['x-auth-key-id'], 'k-alice');
    t.equal(h['x-auth-method'], 'apiKey');
    t.equal(h['x-auth-assertion'], undefined, 'a client assertion header is removed');
    t.equal(h['x_auth_method'], undefined, 'underscore spellings are dropped by nginx');
    t.equal(h['authorization'], undefined, 'the credential stops at nginx');
    t.match(h['x-request-id'], /^[0-9a-f-]{36}$/, "the gateway's request id reaches the upstream");

    const headerKey = await via('/app/y', { 'x-api-key': 'premium-key' });
    t.equal(headerKey.status, 200, 'key in x-api-key');
    t.equal(headerKey.seen!.headers['x-auth-subject'], 'bob');
    t.equal(headerKey.seen!.headers['x-api-key'], undefined);

    const pub = await via('/health', { 'x-auth-subject': 'mallory', 'x-auth-role': 'admin' });
    t.equal(pub.status, 200, 'public route → 200');
    t.equal(pub.seen!.headers['x-auth-subject'], undefined, 'public route: no identity, spoofed one removed');
    t.equal(pub.seen!.headers['x-auth-role'], undefined);

    // Without the snippet's clearing of X-Forwarded-Uri, the gateway would judge /health here.
    const smuggle = await via('/admin/x', { 'x-forwarded-uri': '/health', 'x-forwarded-method': 'GET', 'x-original-url': '/health' });
    t.equal(smuggle.status, 401, 'a client cannot choose the URI the gateway judges');
    t.equal(smuggle.seen, undefined);

    // The original method reaches the gateway: a POST-only route with premium role.
    const review = await via('/films/3/reviews', { authorization: 'Bearer premium-key', 'content-type': 'application/json' }, 'POST', '{"stars":5}');
    t.equal(review.status, 200);
    t.equal(review.seen!.method, 'POST');
    t.equal(review.seen!.bodyBytes, 11, 'the body still reaches the upstream (only the auth subrequest drops it)');
    const reviewBasic = await via('/films/3/reviews', { authorization: 'Bearer basic-key' }, 'POST', '{}');
    t.equal(reviewBasic.status, 403);

    // The original Host reaches the gateway, so host-specific routes match.
    const hosted = await via('/films/3', { host: 'films.example', authorization: 'Bearer basic-key' });
    t.equal(hosted.status, 200, 'host route matches the original Host');
    const otherHost = await via('/films/3', { host: 'localhost', authorization: 'Bearer basic-key' });
    t.equal(otherHost.status, 500, 'no route for that host: the gateway says 404, auth_request turns it into 500');
    t.equal(otherHost.seen, undefined);

    const traversal = await via('/app/%2e%2e/admin/x', { authorization: 'Bearer basic-key' });
    t.equal(traversal.status, 403, 'a traversal towards /admin is judged as /admin (the client resolved it before sending)');
    t.equal(traversal.seen, undefined);

    // nginx asks about $request_uri and forwards the very same bytes: a path the gateway would
    // reshape must be refused, or the application gets, under /admin, a request that was
    // judged as /app/x (a router that does not resolve dot segments serves it as /admin/…).
    for (const path of ['/admin/%2e%2e/app/x', '/admin/../app/x', '/admin/x/../../app/x']) {
      const before = up.seen.length;
      const answer = await rawRequest(port, `GET ${path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer basic-key\r\nConnection: close\r\n\r\n`);
      t.equal(answer.status, 500, `${path}: refused`);
      t.same(up.seen.slice(before).map((s) => s.url), [], `${path}: the application received nothing`);
    }

    // nginx passes client headers into the auth subrequest and the gateway reads
    // X-Forwarded-Host before Host: unless the snippets set it, the client picks the host
    // that is judged, and the application (reading X-Forwarded-Host) sees the client's.
    await t.test('a client cannot choose the host the gateway judges or the application sees', async (t) => {
      const start = up.seen.length;
      const ask = async (host: string, forwardedHosts: string[], key: string) => {
        const before = up.seen.length;
        const lines = forwardedHosts.map((fh) => `X-Forwarded-Host: ${fh}\r\n`).join('');
        const answer = await rawRequest(port, `GET /settings HTTP/1.1\r\nHost: ${host}\r\n${lines}Authorization: Bearer ${key}\r\nConnection: close\r\n\r\n`);
        return { status: answer.status, seen: up.seen.slice(before) };
      };

      const plain = await ask('admin.example.com', [], 'basic-key');
      t.equal(plain.status, 403, 'control: basic key on the admin host → 403');
      t.same(plain.seen, [], 'control: the application received nothing');

      for (const forwarded of [['www.example.com'], ['www.example.com', 'www.example.com'], ['www.example.com', 'admin.example.com']]) {
        const name = `Host admin.example.com, X-Forwarded-Host ${forwarded.join(' + ')}, basic key`;
        const r = await ask('admin.example.com', forwarded, 'basic-key');
        t.equal(r.status, 403, `${name}: judged as admin.example.com → 403`);
        t.same(r.seen, [], `${name}: the application received nothing`);
      }

      // The reverse: judged on the host the client really asked for, and the application is
      // told that host, not the admin one the client named.
      const reverse = await ask('www.example.com', ['admin.example.com'], 'basic-key');
      t.equal(reverse.status, 200, 'Host www.example.com, X-Forwarded-Host admin.example.com: judged as www.example.com');
      t.equal(reverse.seen.length, 1, 'reverse: the application received the request once');
      t.equal(reverse.seen[0]?.headers.host, 'www.example.com');
      t.equal(reverse.seen[0]?.headers['x-forwarded-host'], 'www.example.com', "reverse: the application sees the judged host, not the client's");
      t.equal(reverse.seen[0]?.headers['x-auth-role'], 'basic');

      // Allowed on the admin host: the client's X-Forwarded-Host (repeated or not) is replaced.
      for (const forwarded of [['www.example.com'], ['www.example.com', 'www.example.com']]) {
        const name = `admin key, X-Forwarded-Host ${forwarded.join(' + ')}`;
        const r = await ask('admin.example.com', forwarded, 'admin-key');
        t.equal(r.status, 200, `${name}: allowed`);
        t.equal(r.seen.length, 1, `${name}: the application received the request once`);
        t.equal(r.seen[0]?.headers['x-forwarded-host'], 'admin.example.com', `${name}: the application sees the judged host`);
        t.equal(r.seen[0]?.headers['x-auth-role'], 'admin');
      }

      // From the application's side: nothing it received names the admin host, in Host or
      // X-Forwarded-Host, with an identity below admin.
      const leaked = up.seen
        .slice(start)
        .filter((s) => [s.headers.host, s.headers['x-forwarded-host']].some((v) => v?.includes('admin.example.com')) && s.headers['x-auth-role'] !== 'admin');
      t.same(
        leaked.map((s) => ({ host: s.headers.host, forwardedHost: s.headers['x-forwarded-host'], role: s.headers['x-auth-role'] })),
        [],
        'no request for the admin host reached the application without an admin identity',
      );
    });
  });
}
