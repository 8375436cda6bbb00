import t from 'tap';
import { startTestGateway } from '../helpers/gateway.js';
import { exchangeRaw } from '../helpers/raw.js';
import { startRawUpstream, type RawSeen } from './raw-upstream.js';

// Behind a trusted proxy the gateway passes X-Forwarded-Host on, and many upstreams take the
// host from it (Rails always, Express with "trust proxy", Django with USE_X_FORWARDED_HOST).
// Proxies that do not set it themselves (many load balancers) pass the client's own. Routes
// that match on the host would then be chosen by `Host` while the upstream serves the host
// named in X-Forwarded-Host: when the two name different hosts, the request is refused.

const raw = await startRawUpstream();
t.teardown(() => raw.close());
const yaml = (hostRoutes: boolean) => `
upstreams:
  api: { url: "${raw.url}", timeout: 2s }
roles: [basic, admin]
log: { level: silent }
trustedProxies: [127.0.0.0/8]
routes:
${hostRoutes ? `  - match: { host: admin.example.com, path: "/**" }
    minRole: admin
    upstream: api
` : ''}  - match: { path: "/**" }
    minRole: basic
    upstream: api
`;
const table = { 'basic-key': { subject: 'alice', role: 'basic', scopes: [] }, 'admin-key': { subject: 'root', role: 'admin', scopes: [] } };
const withHosts = await startTestGateway(yaml(true), { table });
t.teardown(() => withHosts.close());
const withoutHosts = await startTestGateway(yaml(false), { table });
t.teardown(() => withoutHosts.close());

async function send(gatewayUrl: string, host: string, xfh: string | undefined, key: string) {
  const n = raw.requests.length;
  const r = await exchangeRaw(Number(new URL(gatewayUrl).port), `GET /x HTTP/1.1\r\nHost: ${host}\r\n${xfh === undefined ? '' : `X-Forwarded-Host: ${xfh}\r\n`}X-Api-Key: ${key}\r\nConnection: close\r\n\r\n`, { idleMs: 300, firstMs: 5000 });
  await new Promise((res) => setTimeout(res, 50));
  return { status: r.responses[0]?.status, seen: raw.requests.slice(n) };
}
const header = (r: RawSeen | undefined, name: string) => r?.headerLines.find((l) => l.toLowerCase().startsWith(name + ':'))?.slice(name.length + 1).trim();

t.test('with routes that match on the host, Host and a trusted X-Forwarded-Host must agree', async (t) => {
  const refused: Array<[string, string]> = [
    ['www.example.com', 'admin.example.com'],
    ['admin.example.com', 'www.example.com'],
    ['www.example.com', 'www.example.com, admin.example.com'],
  ];
  for (const [host, xfh] of refused) {
    const r = await send(withHosts.url, host, xfh, 'basic-key');
    t.equal(r.status, 400, `Host ${host}, X-Forwarded-Host ${JSON.stringify(xfh)}: 400`);
    t.same(r.seen, [], `Host ${host}, X-Forwarded-Host ${JSON.stringify(xfh)}: the upstream read nothing`);
  }
  const agreeing: Array<[string, string | undefined, string, number]> = [
    ['www.example.com', 'WWW.example.com.:443', 'basic-key', 200],
    ['admin.example.com', 'admin.example.com', 'basic-key', 403],
    ['admin.example.com:8080', 'Admin.Example.com', 'admin-key', 200],
    ['www.example.com', undefined, 'basic-key', 200],
  ];
  for (const [host, xfh, key, status] of agreeing) {
    const r = await send(withHosts.url, host, xfh, key);
    t.equal(r.status, status, `Host ${host}, X-Forwarded-Host ${xfh}: ${status}`);
    t.equal(r.seen.length, status === 200 ? 1 : 0, 'upstream as expected');
  }
});

t.test('without host routes the host decides nothing, and the trusted header passes on', async (t) => {
  const r = await send(withoutHosts.url, 'www.example.com', 'admin.example.com', 'basic-key');
  t.equal(r.status, 200);
  t.equal(header(r.seen[0], 'x-forwarded-host'), 'admin.example.com');
});
