import t from 'tap';
import { startTestGateway } from '../helpers/gateway.js';
import { exchangeRaw } from '../helpers/raw.js';
import { publicAdminBasic, startRawUpstream } from './raw-upstream.js';

// Servers behind CGI-style header mapping (WSGI, Rack, PHP, CGI) read `X_Forwarded_For` as
// `X-Forwarded-For`. The gateway removes or states the forwarding, URL-override, method-
// override and request-id headers itself, so their `_` spellings must never reach the
// upstream: an application would take a client's address, host, path or method as the
// gateway's. Checked from the upstream's side, on a public route, a protected one and a
// websocket handshake, from an untrusted peer and from a trusted proxy.

const raw = await startRawUpstream();
t.teardown(() => raw.close());
const table = { 'basic-key': { subject: 'alice', role: 'basic', scopes: [] } };
const gw = await startTestGateway(publicAdminBasic(raw.url), { table });
t.teardown(() => gw.close());
const proxied = await startTestGateway(publicAdminBasic(raw.url, { head: 'trustedProxies: ["127.0.0.1/32"]' }), { table });
t.teardown(() => proxied.close());

const SPELLINGS = [
  'X_Forwarded_For: 6.6.6.6', 'x_forwarded_host: evil.example', 'X-Forwarded_Proto: https', 'X_Forwarded_Prefix: /admin',
  'X_Real_IP: 6.6.6.6', 'X_Original_URL: /admin/delete', 'X_Rewrite_URL: /admin/delete', 'X_Original_URI: /admin',
  'X_Forwarded_Path: /admin', 'X_Envoy_Original_Path: /admin', 'X_HTTP_Method_Override: DELETE', 'X_HTTP_Method: DELETE',
  'X_Method_Override: DELETE', 'True_Client_IP: 6.6.6.6', 'CF_Connecting_IP: 6.6.6.6', 'X_Client_IP: 6.6.6.6',
  'Client_IP: 6.6.6.6', 'X_Cluster_Client_IP: 6.6.6.6', 'X_Host: evil.example', 'X_Request_Id: forged',
  'Proxy_Authorization: Basic b3BzOmh1bnRlcjI=', 'Content_Length: 5',
];

async function send(port: number, head: string) {
  const mark = raw.mark();
  const n = raw.requests.length;
  const r = await exchangeRaw(port, head, { idleMs: 300, firstMs: 5000 });
  await new Promise((res) => setTimeout(res, 50));
  return { status: r.responses[0]?.status, seen: raw.requests.slice(n), bytes: raw.textSince(mark) };
}

const WS = 'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n';
const REQUESTS: [string, (extra: string) => string][] = [
  ['public route', (x) => `GET /public/x HTTP/1.1\r\nHost: a.example\r\n${x}\r\nConnection: close\r\n\r\n`],
  ['protected route, valid key', (x) => `POST /items/42 HTTP/1.1\r\nHost: a.example\r\nX-Api-Key: basic-key\r\n${x}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`],
  ['websocket handshake', (x) => `GET /public/ws HTTP/1.1\r\nHost: a.example\r\n${WS}${x}\r\n\r\n`],
];

for (const [who, g] of [['untrusted peer', gw], ['trusted proxy', proxied]] as const) {
  t.test(`a "_" spelling of a header the gateway manages is refused (${who}); the upstream reads nothing`, async (t) => {
    const port = Number(new URL(g.url).port);
    for (const [where, build] of REQUESTS) {
      for (const line of SPELLINGS) {
        const r = await send(port, build(line));
        t.equal(r.status, 400, `${where}, ${line}: 400`);
        t.same(r.seen, [], `${where}, ${line}: no request upstream`);
        t.equal(r.bytes, '', `${where}, ${line}: not a byte upstream`);
      }
    }
  });
}

t.test('"_" in a header the gateway does not manage passes unchanged, beside the gateway\'s own forwarding headers', async (t) => {
  const port = Number(new URL(gw.url).port);
  const r = await send(port, 'GET /items/1 HTTP/1.1\r\nHost: a.example\r\nX-Api-Key: basic-key\r\nX_Correlation_Id: c-1\r\nX-Forwarded-For: 6.6.6.6\r\nConnection: close\r\n\r\n');
  t.equal(r.status, 200);
  t.equal(r.seen.length, 1);
  const lines = r.seen[0]!.headerLines.map((l) => l.toLowerCase());
  t.ok(lines.includes('x_correlation_id: c-1'), 'an unmanaged "_" header is forwarded');
  t.same(lines.filter((l) => l.startsWith('x-forwarded-for') || l.startsWith('x_forwarded')), ['x-forwarded-for: 127.0.0.1'], "X-Forwarded-For is the gateway's own");
});
