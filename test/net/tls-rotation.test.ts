import t from 'tap';
import https from 'node:https';
import type { TLSSocket } from 'node:tls';
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { httpsGet, makePki } from '../helpers/certs.js';
import { spawnGateway } from '../helpers/spawn.js';
import { startUpstream } from '../helpers/upstream.js';

// Certificate rotation on a running `portcullis serve`: new files, SIGHUP, traffic throughout.
// One gateway process for both tests: starting one on the embedded store is slow on a busy machine.
t.setTimeout(300_000);
const pki = makePki();
const up = await startUpstream();
t.teardown(() => up.close());

const certFile = join(pki.dir, 'live.pem');
const keyFile = join(pki.dir, 'live.key');
copyFileSync(pki.path('server', 'pem'), certFile);
copyFileSync(pki.path('server', 'key'), keyFile);

const config = `
listen: { host: 127.0.0.1, port: 0, tls: { cert: ${certFile}, key: ${keyFile} } }
admin: { host: 127.0.0.1, port: 0 }
store: { url: "sqlite://memory" }
upstreams: { api: { url: "${up.url}", timeout: 10s } }
log: { level: info }
routes:
  - match: { path: "/**" }
    public: true
    upstream: api
`;

/** One request on `agent`; the CN of the certificate its connection was made with. */
function get(url: string, agent: https.Agent): Promise<string> {
  return new Promise((resolve, reject) => {
    https
      .get(`${url}/r`, { agent }, (res) => {
        const cn = (res.socket as TLSSocket).getPeerCertificate().subject.CN as string;
        res.resume();
        res.on('end', () => (res.statusCode === 200 ? resolve(cn) : reject(new Error(`status ${res.statusCode}`))));
      })
      .on('error', reject);
  });
}

const gw = await spawnGateway(config, { timeoutMs: 120_000 });
t.teardown(() => gw.stop());
const url = `https://127.0.0.1:${gw.port}`;

t.test('SIGHUP swaps the certificate under traffic: no request fails, open connections stay, new ones see the new certificate', async (t) => {
  const ca = pki.read('ca', 'pem');
  // Session resumption would hand back the old certificate: every new connection does a full handshake.
  const pooled = new https.Agent({ keepAlive: true, maxSockets: 1, ca, maxCachedSessions: 0 });
  const fresh = new https.Agent({ keepAlive: false, ca, maxCachedSessions: 0 });
  t.teardown(() => { pooled.destroy(); fresh.destroy(); });

  t.equal(await get(url, pooled), 'server', 'the first certificate');
  const seen = { pooled: new Set<string>(), fresh: new Set<string>() };
  const failures: string[] = [];
  let served = 0;
  let stop = false;
  const loop = async (agent: https.Agent, into: Set<string>) => {
    while (!stop) {
      try {
        into.add(await get(url, agent));
        served++;
      } catch (e) {
        failures.push((e as Error).message);
      }
    }
  };
  const loops = [loop(pooled, seen.pooled), loop(fresh, seen.fresh), loop(fresh, seen.fresh)];
  await new Promise((r) => setTimeout(r, 300));
  copyFileSync(pki.path('server2', 'pem'), certFile);
  copyFileSync(pki.path('server2', 'key'), keyFile);
  gw.child.kill('SIGHUP');
  const deadline = Date.now() + 10_000;
  while (!seen.fresh.has('server2') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  await new Promise((r) => setTimeout(r, 300));
  stop = true;
  await Promise.all(loops);

  t.same(failures, [], 'no request failed across the rotation');
  t.ok(served >= 3, `requests kept flowing (${served})`);
  t.ok(seen.fresh.has('server') && seen.fresh.has('server2'), 'new connections moved from the old certificate to the new one');
  t.same([...seen.pooled], ['server'], 'the kept-alive connection opened before the rotation was never dropped');
  const after = await httpsGet(url, { ca });
  t.equal(after.cn, 'server2', 'a new connection after the reload gets the new certificate');
  t.notOk(gw.lines.some((l) => l.includes('reload refused')), 'the reload was accepted');
});

t.test('a rotation to unusable files is refused: the old certificate keeps serving', async (t) => {
  const ca = pki.read('ca', 'pem');
  const before = (await httpsGet(url, { ca })).cn;
  // A certificate with the key of another one: what a half-finished copy looks like.
  copyFileSync(pki.path('client', 'key'), keyFile);
  gw.child.kill('SIGHUP');
  const deadline = Date.now() + 10_000;
  while (!gw.lines.some((l) => l.includes('reload refused')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  const refused = gw.lines.find((l) => l.includes('reload refused'));
  t.match(refused, /listen\.tls\.key: the key does not belong to the certificate/, 'the refusal names the key with its position');
  t.equal((await httpsGet(url, { ca })).cn, before, 'still serving the certificate it had');
});
