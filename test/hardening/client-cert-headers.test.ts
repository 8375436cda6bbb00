import t from 'tap';
import { connect } from 'node:tls';
import { makePki } from '../helpers/certs.js';
import { startTestGateway } from '../helpers/gateway.js';
import { exchangeRaw } from '../helpers/raw.js';
import { publicAdminBasic, startRawUpstream } from './raw-upstream.js';

// TLS terminators state a client certificate to the application in headers (nginx's
// X-SSL-Client-Verify/-S-DN, Apache's SSL-Client-*, RFC 9440's Client-Cert, Envoy's XFCC,
// IIS's X-ARR-ClientCert, AWS's X-Amzn-Mtls-Clientcert); an upstream may admit on them. A
// client must never state them: they are removed unless a trusted proxy (which terminated
// TLS) sent them, and always on a connection the gateway terminated itself, where nobody
// before it saw a certificate. Checked from the upstream's side.

const raw = await startRawUpstream();
t.teardown(() => raw.close());
const pki = makePki();
const table = { 'basic-key': { subject: 'alice', role: 'basic', scopes: [] } };
const trusted = 'trustedProxies: ["127.0.0.1/32"]\n';
const plain = await startTestGateway(publicAdminBasic(raw.url), { table });
t.teardown(() => plain.close());
const proxied = await startTestGateway(publicAdminBasic(raw.url, { head: trusted }), { table });
t.teardown(() => proxied.close());
const tls = `listen:\n  tls: { cert: ${pki.path('server', 'pem')}, key: ${pki.path('server', 'key')}, ca: ${pki.path('ca', 'pem')}, clientCertificates: request }\n`;
const terminated = await startTestGateway(publicAdminBasic(raw.url, { head: trusted + tls }), { table });
t.teardown(() => terminated.close());

const FORGED = [
  'X-SSL-Client-Verify: SUCCESS', 'X-SSL-Client-S-DN: CN=admin', 'X-SSL-Client-Cert: -----BEGIN', 'X-SSL-Cert: -----BEGIN',
  'SSL-Client-Verify: SUCCESS', 'SSL-Client-Cert: -----BEGIN', 'X-Client-Cert: -----BEGIN', 'X-Client-Verify: SUCCESS',
  'X-Client-DN: CN=admin', 'X-ARR-ClientCert: MIIB', 'X-Amzn-Mtls-Clientcert: -----BEGIN', 'X-Amzn-Mtls-Clientcert-Subject: CN=admin',
  'Client-Cert: :MIIB:', 'Client-Cert-Chain: :MIIB:', 'X-Forwarded-Client-Cert: Hash=1;Subject="CN=admin"',
  'X-Forwarded-Tls-Client-Cert: MIIB', 'X-Forwarded-Tls-Client-Cert-Info: Subject%3D%22CN%3Dadmin%22', 'Cf-Client-Cert-Sha256: 00ff',
];
const NAMES = FORGED.map((h) => h.split(':')[0]!.toLowerCase());

function tlsExchange(port: number, head: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1', rejectUnauthorized: false, cert: pki.read('client', 'pem'), key: pki.read('client', 'key') }, () => s.write(head));
    let got = '';
    s.on('data', (d: Buffer) => (got += d.toString('latin1')));
    s.on('close', () => resolve(got));
    s.on('error', reject);
  });
}

async function send(g: { url: string }, path: string, via: 'tcp' | 'tls') {
  const n = raw.requests.length;
  const head = `GET ${path} HTTP/1.1\r\nHost: a.example\r\nX-Api-Key: basic-key\r\n${FORGED.join('\r\n')}\r\nConnection: close\r\n\r\n`;
  const port = Number(new URL(g.url).port);
  const status = via === 'tls' ? Number(/^HTTP\/1\.1 (\d+)/.exec(await tlsExchange(port, head))?.[1]) : (await exchangeRaw(port, head, { idleMs: 300, firstMs: 5000 })).responses[0]?.status;
  await new Promise((res) => setTimeout(res, 50));
  const seen = raw.requests.slice(n);
  const names = seen.flatMap((s) => s.headerLines.map((l) => l.slice(0, l.indexOf(':')).toLowerCase()));
  return { status, seen: seen.length, certNames: names.filter((x) => NAMES.includes(x)) };
}

for (const path of ['/public/x', '/items/1']) {
  t.test(`${path}: a client's certificate headers never reach the upstream`, async (t) => {
    const direct = await send(plain, path, 'tcp');
    t.same([direct.status, direct.seen], [200, 1], 'plain HTTP, untrusted peer: forwarded');
    t.same(direct.certNames, [], 'without any certificate header');
    const overTls = await send(terminated, path, 'tls');
    t.same([overTls.status, overTls.seen], [200, 1], 'TLS the gateway terminated (client certificate presented), even from a trusted address: forwarded');
    t.same(overTls.certNames, [], 'without any certificate header');
    const behind = await send(proxied, path, 'tcp');
    t.same([behind.status, behind.seen], [200, 1], 'plain HTTP from a trusted proxy that terminated TLS');
    t.same(behind.certNames.sort(), [...NAMES].sort(), "keeps the proxy's certificate headers");
  });
}

t.test('their _ spellings are refused, as other forwarding headers', async (t) => {
  const n = raw.requests.length;
  const r = await exchangeRaw(Number(new URL(plain.url).port), 'GET /public/x HTTP/1.1\r\nHost: a.example\r\nX_SSL_Client_Verify: SUCCESS\r\nConnection: close\r\n\r\n', { idleMs: 300, firstMs: 5000 });
  t.equal(r.responses[0]?.status, 400);
  t.equal(raw.requests.length, n, 'nothing upstream');
});
