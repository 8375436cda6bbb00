import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import { httpsGet, makePki } from '../helpers/certs.js';
import { startTestGateway } from '../helpers/gateway.js';
import { startUpstream } from '../helpers/upstream.js';

const pki = makePki();
const up = await startUpstream();
t.teardown(() => up.close());

const yaml = (tls: string) => `
listen:
  tls: ${tls}
upstreams:
  api: { url: "${up.url}" }
log: { level: silent }
routes:
  - match: { path: "/**" }
    public: true
    upstream: api
`;

/** The problems a refused config reports, in order; [] for an accepted one. */
function problemsOf(text: string, file: string): readonly string[] {
  try {
    parseConfig(text, file, {});
    return [];
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
}

t.test('config errors name the file, line and column of the key that names the file', async (t) => {
  const garbage = join(pki.dir, 'garbage.pem');
  writeFileSync(garbage, 'not a certificate\n');
  const cases: Array<[string, string, RegExp]> = [
    ['missing certificate file', `{ cert: ${join(pki.dir, 'nope.pem')}, key: ${pki.path('server', 'key')} }`, /^test\.yaml:3:\d+ listen\.tls\.cert: cannot read .*nope\.pem: ENOENT/],
    ['not a PEM certificate', `{ cert: ${garbage}, key: ${pki.path('server', 'key')} }`, /^test\.yaml:3:\d+ listen\.tls\.cert: .*garbage\.pem is not a usable PEM certificate/],
    ['not a PEM key', `{ cert: ${pki.path('server', 'pem')}, key: ${garbage} }`, /^test\.yaml:3:\d+ listen\.tls\.key: .*garbage\.pem is not a usable PEM key/],
    ['a key of another certificate', `{ cert: ${pki.path('server', 'pem')}, key: ${pki.path('client', 'key')} }`, /^test\.yaml:3:\d+ listen\.tls\.key: the key does not belong to the certificate/],
    ['a CA file without a certificate', `{ cert: ${pki.path('server', 'pem')}, key: ${pki.path('server', 'key')}, ca: ${garbage}, clientCertificates: require }`, /^test\.yaml:3:\d+ listen\.tls\.ca: .*no PEM certificate/],
    ['client certificates without a CA', `{ cert: ${pki.path('server', 'pem')}, key: ${pki.path('server', 'key')}, clientCertificates: require }`, /^test\.yaml:3:\d+ listen\.tls: clientCertificates: require needs ca/],
    ['an unknown TLS version', `{ cert: ${pki.path('server', 'pem')}, key: ${pki.path('server', 'key')}, minVersion: TLSv1.1 }`, /^test\.yaml:3:\d+ listen\.tls\.minVersion:/],
  ];
  for (const [name, tls, want] of cases) {
    t.match(problemsOf(yaml(tls), 'test.yaml')[0], want, name);
  }
  const upstreamCase = `
upstreams:
  api:
    url: "http://127.0.0.1:1"
    tls: { ca: ${pki.path('ca', 'pem')} }
  sec:
    url: "https://127.0.0.1:1"
    tls: { cert: ${pki.path('client', 'pem')} }
routes:
  - match: { path: "/**" }
    public: true
    upstream: api
`;
  t.match(problemsOf(upstreamCase, 'u.yaml'), [/^u\.yaml:5:10 upstreams\.api\.tls: tls applies to https:\/\/ upstreams only/, /^u\.yaml:8:10 upstreams\.sec\.tls: a client certificate needs both cert and key/]);
});

t.test('HTTPS on the main listener: HTTP/1.1 by ALPN, the upstream told the client came over https', async (t) => {
  const gw = await startTestGateway(yaml(`{ cert: ${pki.path('server', 'pem')}, key: ${pki.path('server', 'key')} }`));
  t.teardown(() => gw.close());
  t.match(gw.url, /^https:\/\/127\.0\.0\.1:\d+$/);
  const before = up.seen.length;
  const a = await httpsGet(gw.url, { ca: pki.read('ca', 'pem'), ALPNProtocols: ['h2', 'http/1.1'] });
  t.same(a, { status: 200, cn: 'server', protocol: 'http/1.1' });
  t.equal(up.seen[before]!.headers['x-forwarded-proto'], 'https');
  await t.rejects(httpsGet(gw.url, { ca: pki.read('other-ca', 'pem') }), { code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' }, 'the certificate is the configured one');
  await t.rejects(httpsGet(gw.url, { ca: pki.read('ca', 'pem'), maxVersion: 'TLSv1.1', minVersion: 'TLSv1' }), 'TLS below 1.2 is refused');
  t.equal(up.seen.length, before + 1, 'refused handshakes never reached the upstream');
});

t.test('clientCertificates: require — without a certificate signed by ca there is no handshake', async (t) => {
  const gw = await startTestGateway(yaml(`{ cert: ${pki.path('server', 'pem')}, key: ${pki.path('server', 'key')}, ca: ${pki.path('ca', 'pem')}, clientCertificates: require }`));
  t.teardown(() => gw.close());
  let secured = 0;
  gw.gw.server.on('secureConnection', () => secured++);
  const before = up.seen.length;
  const ca = pki.read('ca', 'pem');
  for (const v of ['TLSv1.2', 'TLSv1.3'] as const) {
    await t.rejects(httpsGet(gw.url, { ca, maxVersion: v }), `${v}: no certificate`);
    await t.rejects(httpsGet(gw.url, { ca, maxVersion: v, cert: pki.read('stranger', 'pem'), key: pki.read('stranger', 'key') }), `${v}: a certificate from another CA`);
    await t.rejects(httpsGet(gw.url, { ca, maxVersion: v, cert: pki.read('server', 'pem'), key: pki.read('client', 'key') }), `${v}: a certificate without its key`);
  }
  t.equal(secured, 0, 'none of them completed a handshake');
  t.equal(up.seen.length, before, 'nothing reached the upstream');
  const ok = await httpsGet(gw.url, { ca, cert: pki.read('client', 'pem'), key: pki.read('client', 'key') });
  t.equal(ok.status, 200, 'a certificate signed by ca gets through');
  t.equal(secured, 1);
});

t.test('clientCertificates: request — asked for, not required', async (t) => {
  const gw = await startTestGateway(yaml(`{ cert: ${pki.path('server', 'pem')}, key: ${pki.path('server', 'key')}, ca: ${pki.path('ca', 'pem')}, clientCertificates: request }`));
  t.teardown(() => gw.close());
  const ca = pki.read('ca', 'pem');
  t.equal((await httpsGet(gw.url, { ca })).status, 200);
  t.equal((await httpsGet(gw.url, { ca, cert: pki.read('client', 'pem'), key: pki.read('client', 'key') })).status, 200);
});

t.test('a reload swaps certificate and client-certificate policy for new handshakes; TLS on or off waits for a restart', async (t) => {
  const server = `cert: ${pki.path('server', 'pem')}, key: ${pki.path('server', 'key')}`;
  const gw = await startTestGateway(yaml(`{ ${server} }`));
  t.teardown(() => gw.close());
  const ca = pki.read('ca', 'pem');
  t.equal((await httpsGet(gw.url, { ca })).cn, 'server');

  await gw.reload(parseConfig(yaml(`{ cert: ${pki.path('server2', 'pem')}, key: ${pki.path('server2', 'key')}, ca: ${pki.path('ca', 'pem')}, clientCertificates: require }`), 'test.yaml', {}));
  await t.rejects(httpsGet(gw.url, { ca }), 'a client without a certificate is refused after the reload');
  const withCert = await httpsGet(gw.url, { ca, cert: pki.read('client', 'pem'), key: pki.read('client', 'key') });
  t.same([withCert.status, withCert.cn], [200, 'server2'], 'the new certificate, the new policy');

  await gw.reload(parseConfig(yaml(`{ ${server} }`), 'test.yaml', {}));
  t.equal((await httpsGet(gw.url, { ca })).cn, 'server', 'back to no client certificate');

  const plain = `
upstreams:
  api: { url: "${up.url}" }
routes:
  - match: { path: "/**" }
    public: true
    upstream: api
`;
  await gw.reload(parseConfig(plain, 'test.yaml', {}));
  t.ok(gw.lines.some((l) => l.includes('listen.tls changed between on and off')), 'the operator is told it takes a restart');
  t.equal((await httpsGet(gw.url, { ca })).status, 200, 'still HTTPS meanwhile');
});
