import t from 'tap';
import { startTestGateway } from '../helpers/gateway.js';
import { exchangeRaw } from '../helpers/raw.js';
import { startRawUpstream } from './raw-upstream.js';

// Routes compare paths exactly; many upstreams route without regard to case (Express and
// ASP.NET by default, IIS). A path whose letter case decides which route it matches would be
// judged by a looser route and served by the handler a stricter one protects: `/ADMIN/users`
// misses `/admin/**`, matches `/**`, and reaches `/admin/users` upstream with a basic
// identity. Such a path is refused, and the upstream, a raw recording server, reads nothing.

const raw = await startRawUpstream();
t.teardown(() => raw.close());
const g = await startTestGateway(`
upstreams:
  api: { url: "${raw.url}", timeout: 2s }
roles: [basic, admin]
log: { level: silent }
routes:
  - match: { path: "/public/**" }
    public: true
    upstream: api
  - match: { path: "/admin/**" }
    minRole: admin
    upstream: api
  - match: { path: "/settings/**" }
    minRole: admin
    upstream: api
  - match: { path: "/keys/**" }
    minRole: admin
    upstream: api
  - match: { path: "/Reports/**" }
    minRole: admin
    upstream: api
  - match: { path: "/**" }
    minRole: basic
    upstream: api
`, {
  table: {
    'basic-key': { subject: 'alice', role: 'basic', scopes: [] },
    'admin-key': { subject: 'root', role: 'admin', scopes: [] },
  },
});
t.teardown(() => g.close());
const port = Number(new URL(g.url).port);

async function send(path: string, key?: string) {
  const n = raw.requests.length;
  const r = await exchangeRaw(port, `GET ${path} HTTP/1.1\r\nHost: app.test\r\n${key ? `X-Api-Key: ${key}\r\n` : ''}Connection: close\r\n\r\n`, { idleMs: 1000 });
  await new Promise((res) => setTimeout(res, 50));
  return { status: r.responses[0]?.status, upstream: raw.requests.slice(n).map((s) => s.requestLine) };
}

t.test('a path whose letter case picks the route is refused', async (t) => {
  const cases: Array<[string, string | undefined]> = [
    ['/ADMIN/users', 'basic-key'],
    ['/Admin/users', 'basic-key'],
    ['/%41dmin/users', 'basic-key'],
    ['/adm%C4%B1n/users', 'basic-key'], // dotless ı: ADMIN to Java and .NET case-insensitive compares
    ['/adm%C4%B0n/users', 'basic-key'], // dotted İ
    ['/%C5%BFettings/x', 'basic-key'], // long s
    ['/%E2%84%AAeys/x', 'basic-key'], // Kelvin sign
    ['/reports/q3', 'basic-key'], // the rule is spelled /Reports
    ['/PUBLIC/x', undefined],
    // Dots and spaces at the end of a segment: IIS and Spring's trimming matcher drop them.
    ['/admin./users', 'basic-key'],
    ['/admin%2E/users', 'basic-key'],
    ['/admin%20/users', 'basic-key'],
    ['/settings.%20/x', 'basic-key'],
    ['/Reports./q3', 'basic-key'],
    ['/%20admin/users', 'basic-key'], // Spring's trimming drops leading spaces too
    ['/%20/admin/users', 'basic-key'], // and a segment trimmed to nothing
    ['/x/..%20/admin/users', 'basic-key'], // ".. " may be ".." to Windows
    ['/x/.../admin/users', 'basic-key'],
  ];
  for (const [path, key] of cases) {
    const r = await send(path, key);
    t.equal(r.status, 400, `${path}: 400`);
    t.same(r.upstream, [], `${path}: the upstream read nothing`);
  }
});

t.test('letter case that does not change the route is proxied as it is', async (t) => {
  const cases: Array<[string, string, number]> = [
    ['/files/MyDoc.PDF', 'basic-key', 200],
    ['/admin/Users', 'admin-key', 200],
    ['/admin/Users', 'basic-key', 403],
    ['/Reports/q3', 'admin-key', 200],
    ['/public/%C3%A9t%C3%A9', 'basic-key', 200],
    ['/files/report.', 'basic-key', 200],
    ['/admin./users', 'admin-key', 400],
  ];
  for (const [path, key, status] of cases) {
    const r = await send(path, key);
    t.equal(r.status, status, `${path} with ${key}: ${status}`);
    t.same(r.upstream, status === 200 ? [`GET ${path} HTTP/1.1`] : [], `${path}: upstream as expected`);
  }
});
