import t from 'tap';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { request } from 'undici';
import WebSocket, { WebSocketServer } from 'ws';
import { makePki } from '../helpers/certs.js';
import { startTestGateway } from '../helpers/gateway.js';

const pki = makePki();

interface TlsSeen { url: string; clientCn: string | undefined; sni: string | false | null; host: string | undefined }

/** An https upstream that requires a client certificate signed by the test CA and records who called. */
async function startTlsUpstream(name: 'upstream' | 'impostor') {
  const seen: TlsSeen[] = [];
  const who = (req: import('node:http').IncomingMessage): TlsSeen => {
    const s = req.socket as TLSSocket;
    return { url: req.url!, clientCn: s.getPeerCertificate().subject?.CN as string | undefined, sni: s.servername, host: req.headers.host };
  };
  const server = https.createServer({ cert: pki.read(name, 'pem'), key: pki.read(name, 'key'), ca: pki.read('ca', 'pem'), requestCert: true, rejectUnauthorized: true }, (req, res) => {
    seen.push(who(req));
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('secure');
  });
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws, req) => {
    seen.push(who(req));
    ws.on('message', (m) => ws.send(`echo:${m}`));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return { seen, port, close: () => new Promise<void>((r) => { wss.close(); server.closeAllConnections(); server.close(() => r()); }) };
}

const up = await startTlsUpstream('upstream');
const impostor = await startTlsUpstream('impostor');
t.teardown(() => Promise.all([up.close(), impostor.close()]));

const client = `cert: ${pki.path('client', 'pem')}, key: ${pki.path('client', 'key')}`;
const gw = await startTestGateway(`
upstreams:
  sec: { url: "https://127.0.0.1:${up.port}", tls: { ca: ${pki.path('ca', 'pem')}, ${client} } }
  named: { url: "https://127.0.0.1:${up.port}", tls: { ca: ${pki.path('ca', 'pem')}, ${client}, servername: localhost } }
  nocert: { url: "https://127.0.0.1:${up.port}", tls: { ca: ${pki.path('ca', 'pem')} } }
  wrongca: { url: "https://127.0.0.1:${up.port}", tls: { ca: ${pki.path('other-ca', 'pem')}, ${client} } }
  impostor: { url: "https://127.0.0.1:${impostor.port}", tls: { ca: ${pki.path('ca', 'pem')}, ${client} } }
  system: { url: "https://127.0.0.1:${up.port}" }
log: { level: silent }
routes:
${['sec', 'named', 'nocert', 'wrongca', 'impostor', 'system'].map((n) => `  - match: { path: "/${n}/**" }\n    public: true\n    upstream: ${n}`).join('\n')}
`);
t.teardown(() => gw.close());

async function get(path: string, host?: string) {
  const r = await request(gw.url + path, host === undefined ? {} : { headers: { host } });
  return { status: r.statusCode, body: await r.body.text() };
}

t.test('an https upstream behind a private CA that requires a client certificate', async (t) => {
  const before = up.seen.length;
  t.same(await get('/sec/a', 'api.example.com'), { status: 200, body: 'secure' });
  t.same(up.seen.slice(before), [{ url: '/sec/a', clientCn: 'client', sni: false, host: 'api.example.com' }],
    'the gateway showed its client certificate; an IP-literal upstream gets no SNI and its IP is checked, whatever Host the client sent');
  t.same(await get('/named/b', 'api.example.com'), { status: 200, body: 'secure' });
  t.match(up.seen.at(-1), { url: '/named/b', clientCn: 'client', sni: 'localhost' }, 'servername is the SNI and the name checked');
});

t.test('a failed upstream handshake is 502 upstream-unavailable', async (t) => {
  const before = up.seen.length;
  for (const [path, why] of [
    ['/nocert/x', 'no client certificate for an upstream that requires one'],
    ['/wrongca/x', 'the upstream certificate is not signed by the configured CA'],
    ['/impostor/x', 'a server with a certificate from another CA'],
    ['/system/x', 'the private CA is not among the system CAs'],
  ] as const) {
    const r = await get(path);
    t.equal(r.status, 502, why);
    t.match(JSON.parse(r.body), { code: 'upstream-unavailable' }, why);
  }
  t.equal(up.seen.length, before, 'no request was served by the upstream');
  t.equal(impostor.seen.length, 0, 'nothing was sent to the impostor');
});

t.test('websocket upgrades use the same TLS settings', async (t) => {
  const before = up.seen.length;
  const ws = new WebSocket(gw.url.replace('http', 'ws') + '/sec/ws');
  const reply = await new Promise<string>((resolve, reject) => {
    ws.on('open', () => ws.send('hi'));
    ws.on('message', (m) => resolve(String(m)));
    ws.on('error', reject);
  });
  ws.close();
  t.equal(reply, 'echo:hi');
  t.match(up.seen[before], { url: '/sec/ws', clientCn: 'client' });
  const refused = new WebSocket(gw.url.replace('http', 'ws') + '/wrongca/ws');
  const status = await new Promise<number>((resolve) => {
    refused.on('unexpected-response', (_req, res) => resolve(res.statusCode!));
    refused.on('open', () => resolve(101));
    refused.on('error', () => resolve(-1));
  });
  t.equal(status, 502, 'an upgrade to an upstream with the wrong CA is refused as 502');
});
