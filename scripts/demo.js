// `npm run demo`: a demo upstream on 127.0.0.1:3000, a demo API key in the embedded store, and
// `portcullis serve` on the shipped gateway.config.yaml — then one request through it.
import http from 'node:http';
import { spawn, execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const bin = fileURLToPath(new URL('../bin/portcullis.js', import.meta.url));
const UPSTREAM_PORT = Number(process.env.DEMO_UPSTREAM_PORT ?? 3000);

// 1. The upstream: answers with what it was told about the caller.
const upstream = http.createServer((req, res) => {
  const identity = Object.fromEntries(Object.entries(req.headers).filter(([k]) => k.startsWith('x-auth-') || k === 'x-request-id' || k === 'x-forwarded-for'));
  const body = JSON.stringify({ upstream: 'demo', method: req.method, path: req.url, identity }, null, 2);
  res.writeHead(200, { 'content-type': 'application/json' }).end(body + '\n');
});
await new Promise((resolve, reject) => {
  upstream.once('error', (err) => reject(new Error(`demo upstream cannot listen on 127.0.0.1:${UPSTREAM_PORT}: ${err.message} (set DEMO_UPSTREAM_PORT and UPSTREAM_URL)`)));
  upstream.listen(UPSTREAM_PORT, '127.0.0.1', resolve);
});
console.log(`demo upstream on http://127.0.0.1:${UPSTREAM_PORT}`);

// 2. A key for a demo user (replacing the previous demo key), in ./data/portcullis.db.
const created = JSON.parse(
  execFileSync(process.execPath, [bin, 'keys', 'create', '--subject', 'demo-user', '--role', 'premium', '--scopes', 'reviews:write', '--name', 'demo', '--replace', '--json'], { cwd: root, encoding: 'utf8' }),
);
const key = created.key;

// 3. The gateway on the shipped config.
const gw = spawn(process.execPath, [bin, 'serve'], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'], env: { UPSTREAM_URL: `http://127.0.0.1:${UPSTREAM_PORT}`, ...process.env } });
let started = false;
gw.stdout.setEncoding('utf8');
let buf = '';
gw.stdout.on('data', (chunk) => {
  buf += chunk;
  let i;
  while ((i = buf.indexOf('\n')) !== -1) {
    const line = buf.slice(0, i);
    buf = buf.slice(i + 1);
    let j;
    try { j = JSON.parse(line); } catch { console.log(line); continue; }
    if (j.msg === 'admin listening' && !started) {
      started = true;
      void tryIt();
    } else if (j.msg === 'request') console.log(`gateway: ${j.method} ${j.path ?? ''} → ${j.status}${j.code ? ` ${j.code}` : ''} (${j.latencyMs} ms)`);
    else console.log(`gateway: ${j.msg}`);
  }
});
gw.on('exit', (code) => { upstream.close(); process.exit(code ?? 0); });
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => gw.kill('SIGTERM'));

async function tryIt() {
  const base = 'http://127.0.0.1:8080';
  const show = async (title, path, headers = {}, method = 'GET') => {
    const r = await fetch(base + path, { method, headers });
    console.log(`\n$ ${title}\nHTTP ${r.status}\n${(await r.text()).trim()}`);
  };
  await show('GET /films/1 with the demo key', '/films/1', { authorization: `Bearer ${key}` });
  await show('GET /films/1 with the key behind a connection-string preamble', '/films/1', { 'x-api-key': `api.example.com:443:${key}` });
  await show('GET /films/1 without a credential', '/films/1');
  await show('GET /admin/users with the demo key (role premium < admin)', '/admin/users', { authorization: `Bearer ${key}` });
  console.log(`
Try it yourself (Ctrl-C stops the demo):
  curl -i -H 'Authorization: Bearer ${key}' ${base}/films/1
  curl -i -X POST -H 'X-Api-Key: ${key}' ${base}/films/1/reviews
  curl -i ${base}/health
  curl -s http://127.0.0.1:9090/metrics | grep portcullis_requests_total
  npx portcullis explain GET /admin/users --role premium
  npx portcullis keys list
`);
}
