import t from 'tap';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { makePki } from '../../helpers/certs.js';
import { startUpstream } from '../../helpers/upstream.js';
import { spawnGateway, workerPidsOf } from '../../helpers/spawn.js';
import { sleep } from '../../fleet/helpers.js';

// `serve --workers 2` over TLS: the PEM files are read once, by the primary, for every
// worker. A worker replaced after the files were replaced on disk without a reload serves
// the certificate the others serve (one instance, one certificate), and a reload moves all.

const pki = makePki();
const up = await startUpstream();
t.teardown(() => up.close());
const dir = mkdtempSync(join(tmpdir(), 'pcl-workers-tls-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const cert = join(dir, 'tls.pem');
const key = join(dir, 'tls.key');
copyFileSync(pki.path('server', 'pem'), cert);
copyFileSync(pki.path('server', 'key'), key);

const yaml = (tls: string) => `
listen: { host: 127.0.0.1, port: 0${tls} }
admin: { host: 127.0.0.1, port: 0, token: "admin-token-for-the-workers-tls-test-0123" }
store: { url: "sqlite://${join(dir, 'portcullis.db')}" }
upstreams: { api: { url: "${up.url}" } }
workers: 2
routes:
  - match: { path: "/**" }
    public: true
    upstream: api
`;
const gw = await spawnGateway(yaml(`, tls: { cert: "${cert}", key: "${key}" }`), { timeoutMs: 60_000 });
t.teardown(() => gw.stop('SIGKILL'));

/** The certificate's CN on a new connection (the primary hands each to either worker). */
function cnOfNewConnection(): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const s = connect({ port: gw.port, host: '127.0.0.1', ca: pki.read('ca', 'pem'), servername: 'localhost' }, () => {
      const cn = s.getPeerCertificate().subject?.CN;
      s.end();
      resolve(typeof cn === 'string' ? cn : undefined);
    });
    s.on('error', reject);
  });
}

const workerPids = (): Set<number> => workerPidsOf(gw.lines);

/** Kills one worker and waits for its replacement; resolves with the number of workers listening. */
async function replaceOne(): Promise<number> {
  const [victim] = [...workerPids()];
  process.kill(victim!, 'SIGKILL');
  const until = Date.now() + 20_000;
  while (Date.now() < until && (workerPids().has(victim!) || workerPids().size < 2)) await sleep(50);
  return workerPids().size;
}

t.test('a replaced worker serves the certificate the primary read, not the files replaced since', async (t) => {
  const before = await Promise.all([...Array(8)].map(cnOfNewConnection));
  t.same(new Set(before), new Set(['server']));
  copyFileSync(pki.path('server2', 'pem'), cert);
  copyFileSync(pki.path('server2', 'key'), key);
  t.equal(await replaceOne(), 2, 'replaced');
  const after = await Promise.all([...Array(12)].map(cnOfNewConnection));
  t.same(new Set(after), new Set(['server']), 'one certificate on every connection');
  gw.child.kill('SIGHUP');
  const until = Date.now() + 20_000;
  let cns: (string | undefined)[] = [];
  while (Date.now() < until) {
    cns = await Promise.all([...Array(12)].map(cnOfNewConnection));
    if (cns.every((c) => c === 'server2')) break;
    await sleep(100);
  }
  t.same(new Set(cns), new Set(['server2']), 'a reload moves every worker to the new files');
});

/** Whether a plain HTTP request on a new connection gets an answer. */
function plainAnswers(): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port: gw.port, path: '/x', agent: false, timeout: 2_000 }, (res) => {
      res.resume();
      resolve(true);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

t.test('a reload that turns TLS off waits for a restart, on workers started later too', async (t) => {
  writeFileSync(gw.configFile, yaml(''));
  gw.child.kill('SIGHUP');
  await sleep(500);
  t.ok(gw.lines.some((l) => l.includes('listen.tls changed between on and off')), 'the workers say it takes a restart');
  t.equal(await replaceOne(), 2, 'replaced');
  const cns = await Promise.all([...Array(12)].map(cnOfNewConnection));
  t.same(new Set(cns), new Set(['server2']), 'every connection is still TLS, with the last certificate');
  const plain = await Promise.all([...Array(12)].map(plainAnswers));
  t.same(new Set(plain), new Set([false]), 'no connection answers plain HTTP');
});
