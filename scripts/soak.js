// Soak test (`npm run soak`, not run in CI): a gateway process from the build (dist/) under
// minutes of mixed traffic, with key and token revocations through the CLI and config
// reloads by SIGHUP, printing the process's memory and open file descriptors each minute.
//
//   npm run build && npm run soak -- [--minutes 10] [--store sqlite|postgres] [--rps 300]
//                                    [--rss-growth-mb 64] [--heap-growth-mb 32] [--fd-growth 32]
//
// Needs Redis (REDIS_URL, default redis://127.0.0.1:6379); `--store postgres` also needs
// PostgreSQL (DATABASE_URL), where a throw-away database is created and dropped.
//
// Memory is sampled every 5 s and judged by its floor, since the garbage collector makes it
// a sawtooth: after the first minute (warm-up: caches filling), the lowest sample of the
// second half of the run against the lowest of the first half (the middle minute of an odd
// count belongs to neither).
// Fails (exit 1) when that floor rises by more than --rss-growth-mb for resident memory or
// --heap-growth-mb for the V8 heap in use (from the gateway's /metrics), when open file
// descriptors at the end exceed those after the first minute by more than --fd-growth;
// or when any request gets a 5xx or fails at the client, a revoked credential is served
// after its revocation returned, or a reload is not applied.

import { spawn, execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, openSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { SignJWT } from 'jose';
import { Agent, request } from 'undici';
import { Redis } from 'ioredis';
import pg from 'pg';

const run = promisify(execFile);
const ROOT = new URL('..', import.meta.url).pathname;
const BIN = join(ROOT, 'bin/portcullis.js');

const { values: args } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    store: { type: 'string', default: 'sqlite' },
    rps: { type: 'string', default: '300' },
    'rss-growth-mb': { type: 'string', default: '64' },
    'heap-growth-mb': { type: 'string', default: '32' },
    'fd-growth': { type: 'string', default: '32' },
  },
});
const MINUTES = Number(args.minutes);
const RPS = Number(args.rps);
const RSS_GROWTH_MB = Number(args['rss-growth-mb']);
const HEAP_GROWTH_MB = Number(args['heap-growth-mb']);
const FD_GROWTH = Number(args['fd-growth']);
if (!(MINUTES > 0) || !(RPS > 0) || !['sqlite', 'postgres'].includes(args.store)) {
  console.error('usage: npm run soak -- [--minutes N] [--store sqlite|postgres] [--rps N] [--rss-growth-mb N] [--fd-growth N]');
  process.exit(2);
}

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const JWT_SECRET = randomBytes(32).toString('hex');
const ISSUER = 'https://soak.portcullis.test';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// ---- the upstream: answers everything, reads bodies, sometimes streams a larger answer.
const upstream = http.createServer((req, res) => {
  let n = 0;
  req.on('data', (c) => (n += c.length));
  req.on('end', () => {
    if (req.url.startsWith('/public/big')) {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      for (let i = 0; i < 16; i++) res.write(Buffer.alloc(4096, 7));
      res.end();
      return;
    }
    const body = JSON.stringify({ url: req.url, subject: req.headers['x-auth-subject'] ?? null, bytes: n });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
});
await new Promise((r) => upstream.listen(0, '127.0.0.1', r));
const upstreamUrl = `http://127.0.0.1:${upstream.address().port}`;

// ---- store and Redis
const dir = mkdtempSync(join(tmpdir(), 'pcl-soak-'));
const prefix = `pcl-soak-${randomBytes(4).toString('hex')}:`;
let storeUrl = `sqlite://${join(dir, 'data', 'portcullis.db')}`;
let dbName;
if (args.store === 'postgres') {
  dbName = `pcl_soak_${randomBytes(4).toString('hex')}`;
  const c = new pg.Client({ connectionString: DATABASE_URL });
  await c.connect();
  await c.query(`CREATE DATABASE ${dbName}`);
  await c.end();
  const u = new URL(DATABASE_URL);
  u.pathname = `/${dbName}`;
  storeUrl = u.toString();
}
{
  const r = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  await r.connect().catch((err) => {
    console.error(`Redis is required (${REDIS_URL}): ${err.message}`);
    process.exit(2);
  });
  await r.quit();
}

const [port, adminPort] = [await freePort(), await freePort()];
const configFile = join(dir, 'gateway.config.yaml');
/** Two variants, swapped on every reload: the extra route and both authenticators change. */
function writeConfig(variant) {
  writeFileSync(
    configFile,
    `
listen: { host: 127.0.0.1, port: ${port} }
admin: { host: 127.0.0.1, port: ${adminPort} }
upstreams:
  api: { url: "${upstreamUrl}", timeout: 10s }
roles: [basic, premium, admin]
store: { url: "${storeUrl}", poolSize: 4 }
revocation: { redis: "${REDIS_URL}", keyPrefix: "${prefix}", onError: deny }
jwt:
  clockTolerance: ${variant ? '31s' : '30s'}
  issuers:
    - name: soak
      issuer: "${ISSUER}"
      algorithms: [HS256]
      secret: "${JWT_SECRET}"
apiKeys:
  negativeCacheTtl: ${variant ? '6s' : '5s'}
  failedAttempts: { max: 1000000, window: 1m }
log: { level: warn }
routes:
  - match: { path: "/public/**" }
    public: true
    upstream: api
${variant ? '  - match: { path: "/extra/**" }\n    public: true\n    upstream: api\n' : ''}  - match: { path: "/**" }
    minRole: basic
    upstream: api
`,
  );
}
writeConfig(false);

// ---- the gateway process
const logFd = openSync(join(dir, 'gateway.log'), 'a');
const gw = spawn(process.execPath, [BIN, 'serve', '-c', configFile], { cwd: dir, stdio: ['ignore', logFd, logFd] });
let gwExit;
gw.on('exit', (code, signal) => (gwExit = { code, signal }));
const base = `http://127.0.0.1:${port}`;
for (let i = 0; ; i++) {
  if (gwExit) throw new Error(`gateway exited ${JSON.stringify(gwExit)}; log: ${join(dir, 'gateway.log')}`);
  const ok = await request(`http://127.0.0.1:${adminPort}/readyz`).then(
    async (r) => {
      await r.body.dump();
      return r.statusCode === 200;
    },
    () => false,
  );
  if (ok) break;
  if (i > 300) throw new Error('gateway not ready after 30 s');
  await sleep(100);
}

async function cli(...argv) {
  const { stdout } = await run(process.execPath, [BIN, ...argv, '-c', configFile], { cwd: dir, timeout: 60_000 });
  return stdout;
}
async function createKey(subject) {
  return JSON.parse(await cli('keys', 'create', '--subject', subject, '--role', 'basic', '--json'));
}
async function signJwt(sub, jti = randomUUID()) {
  const token = await new SignJWT({ role: 'basic' })
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuer(ISSUER)
    .setSubject(sub)
    .setJti(jti)
    .setIssuedAt()
    .setExpirationTime('2h')
    .sign(new TextEncoder().encode(JWT_SECRET));
  return { token, jti };
}

const steadyKeys = [];
for (let i = 0; i < 3; i++) steadyKeys.push(await createKey(`soak-${i}`));
const jwts = [await signJwt('jwt-a'), await signJwt('jwt-b')];

// ---- traffic
const agent = new Agent({ connections: 32, keepAliveTimeout: 4_000 });
const counts = { total: 0, s2: 0, s4: 0, s5: 0, errors: 0 };
const problems = [];
/** Credentials revoked, with the time their revocation command returned. */
const revoked = [];
/** Credentials being exercised and later revoked. */
const ephemeral = [];

function pick(a) {
  return a[Math.floor(Math.random() * a.length)];
}
function shape() {
  const r = Math.random();
  const bearer = (v) => ({ authorization: `Bearer ${v}` });
  if (r < 0.3) return { kind: 'key', path: '/api/k', headers: bearer(pick(steadyKeys).key) };
  if (r < 0.5) return { kind: 'jwt', path: '/api/j', headers: bearer(pick(jwts).token) };
  if (r < 0.6) return { kind: 'public', path: Math.random() < 0.2 ? '/public/big' : '/public/p' };
  if (r < 0.65) return { kind: 'upload', path: '/api/up', method: 'POST', headers: bearer(pick(steadyKeys).key), body: Buffer.alloc(16 * 1024, 1) };
  if (r < 0.72) return { kind: 'bad', path: '/api/b', headers: { 'x-api-key': `pcl_${randomBytes(10).toString('hex')}_nope` } };
  if (r < 0.77) return { kind: 'badjwt', path: '/api/bj', headers: bearer(`${pick(jwts).token.slice(0, -4)}AAAA`) };
  if (r < 0.82) return { kind: 'none', path: '/api/n' };
  if (r < 0.9 && ephemeral.length) {
    const e = pick(ephemeral);
    return { kind: 'ephemeral', path: '/api/e', headers: bearer(e.value), credential: e };
  }
  if (revoked.length) {
    const e = pick(revoked);
    return { kind: 'revoked', path: '/api/r', headers: bearer(e.value), credential: e };
  }
  return { kind: 'key', path: '/api/k', headers: bearer(pick(steadyKeys).key) };
}

async function one() {
  const s = shape();
  const started = Date.now();
  try {
    const r = await request(base + s.path, {
      method: s.method ?? 'GET',
      headers: s.headers ?? {},
      body: s.body,
      dispatcher: agent,
      // Some requests on fresh connections, so connection setup and teardown are soaked too.
      reset: Math.random() < 0.05,
      headersTimeout: 15_000,
      bodyTimeout: 15_000,
    });
    await r.body.dump();
    counts.total++;
    if (r.statusCode >= 500) {
      counts.s5++;
      if (problems.length < 20) problems.push(`${s.kind} ${s.path}: ${r.statusCode}`);
    } else if (r.statusCode >= 400) counts.s4++;
    else counts.s2++;
    const c = s.credential;
    if (c && c.revokedAt !== undefined && started > c.revokedAt && r.statusCode < 300) {
      problems.push(`revoked ${c.kind} ${c.id} served ${started - c.revokedAt} ms after its revocation returned`);
    }
  } catch (err) {
    counts.total++;
    counts.errors++;
    if (problems.length < 20) problems.push(`${s.kind} ${s.path}: ${err.message}`);
  }
}

let running = true;
const loops = [];
const WORKERS = 16;
for (let w = 0; w < WORKERS; w++) {
  loops.push(
    (async () => {
      const interval = (1000 * WORKERS) / RPS;
      let next = Date.now() + Math.random() * interval;
      while (running) {
        await one();
        next += interval;
        const wait = next - Date.now();
        if (wait > 0) await sleep(wait);
        else next = Date.now();
      }
    })(),
  );
}

// ---- revocations and reloads in the background
const ops = { revocations: 0, reloads: 0, reloadFailures: 0 };
let variant = false;
const background = (async () => {
  let n = 0;
  while (running) {
    n++;
    try {
      const k = await createKey(`eph-${n}`);
      const j = await signJwt(`eph-jwt-${n}`);
      const ek = { kind: 'key', id: k.id, value: k.key };
      const ej = { kind: 'jwt', id: j.jti, value: j.token };
      ephemeral.push(ek, ej);
      await sleep(8_000);
      if (!running) break;
      await cli('keys', 'revoke', k.id);
      ek.revokedAt = Date.now();
      await cli('tokens', 'revoke', '--jti', j.jti);
      ej.revokedAt = Date.now();
      ops.revocations += 2;
      ephemeral.splice(ephemeral.indexOf(ek), 1);
      ephemeral.splice(ephemeral.indexOf(ej), 1);
      revoked.push(ek, ej);
      if (revoked.length > 40) revoked.splice(0, 2);
    } catch (err) {
      problems.push(`revocation cycle: ${err.message}`);
    }
    if (n % 2 === 0 && running) {
      variant = !variant;
      writeConfig(variant);
      gw.kill('SIGHUP');
      // The reload is applied once the extra route answers as the new config says.
      let applied = false;
      for (let i = 0; i < 100 && !applied; i++) {
        await sleep(100);
        const r = await request(`${base}/extra/x`, { dispatcher: agent }).catch(() => undefined);
        if (r) {
          await r.body.dump();
          applied = variant ? r.statusCode === 200 : r.statusCode === 401;
        }
      }
      ops.reloads++;
      if (!applied) {
        ops.reloadFailures++;
        problems.push(`reload ${ops.reloads} not applied within 10 s`);
      }
    }
    await sleep(2_000);
  }
})();

// ---- per-minute figures
function rssKb() {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${gw.pid}/status`, 'utf8'))?.[1] ?? 0);
}
function fds() {
  return readdirSync(`/proc/${gw.pid}/fd`).length;
}
/** V8 heap in use and external memory (MiB), from the gateway's own default metrics. */
async function heap() {
  try {
    const r = await request(`http://127.0.0.1:${adminPort}/metrics`);
    const text = await r.body.text();
    const value = (name) => Number(new RegExp(`^${name} (\\S+)`, 'm').exec(text)?.[1] ?? NaN) / 1048576;
    return { heapMb: value('nodejs_heap_size_used_bytes'), externalMb: value('nodejs_external_memory_bytes') };
  } catch {
    return { heapMb: NaN, externalMb: NaN };
  }
}
const rows = [];
let last = { ...counts };
console.log(`soak: ${MINUTES} min, ${args.store} store, Redis revocation, target ${RPS} req/s; gateway pid ${gw.pid}, log ${join(dir, 'gateway.log')}`);
console.log(`bounds: memory floor growth after minute 1 (second half vs first half) <= ${RSS_GROWTH_MB} MiB RSS and <= ${HEAP_GROWTH_MB} MiB V8 heap; fds <= minute 1 + ${FD_GROWTH}; no 5xx; no client errors; no revoked credential served; every reload applied`);
const header = 'min  rss_MiB(min-max)  heap_MiB(min-max)  ext_MiB  fds  requests  req/s    2xx    4xx  5xx  errors  revocations  reloads';
console.log(header);
const started = Date.now();
let samples = [];
const sampler = setInterval(async () => {
  if (gwExit) return;
  try {
    samples.push({ rssMb: rssKb() / 1024, ...(await heap()) });
  } catch {
    // The process may be gone between the check and the read.
  }
}, 5_000);
for (let m = 1; m <= MINUTES; m++) {
  await sleep(started + m * 60_000 - Date.now());
  if (gwExit) {
    problems.push(`gateway exited ${JSON.stringify(gwExit)}`);
    break;
  }
  const d = {};
  for (const k of Object.keys(counts)) d[k] = counts[k] - last[k];
  last = { ...counts };
  const now = { rssMb: rssKb() / 1024, ...(await heap()) };
  const minute = [...samples, now];
  samples = [];
  const lo = (k) => Math.min(...minute.map((x) => x[k]));
  const hi = (k) => Math.max(...minute.map((x) => x[k]));
  const row = { m, rssMb: lo('rssMb'), rssMax: hi('rssMb'), heapMb: lo('heapMb'), heapMax: hi('heapMb'), externalMb: now.externalMb, fds: fds(), ...d };
  rows.push(row);
  const range = (a, b) => `${a.toFixed(0)}-${b.toFixed(0)}`.padStart(17);
  console.log(
    `${String(m).padStart(3)}  ${range(row.rssMb, row.rssMax)}  ${range(row.heapMb, row.heapMax)}  ${row.externalMb.toFixed(1).padStart(7)}  ${String(row.fds).padStart(3)}  ${String(d.total).padStart(8)}  ${(d.total / 60).toFixed(0).padStart(5)}  ${String(d.s2).padStart(5)}  ${String(d.s4).padStart(5)}  ${String(d.s5).padStart(3)}  ${String(d.errors).padStart(6)}  ${String(ops.revocations).padStart(11)}  ${String(ops.reloads).padStart(7)}`,
  );
}

clearInterval(sampler);
running = false;
await Promise.all(loops);
await background;
await agent.close();

// ---- verdict
const signed = (x) => `${x >= 0 ? '+' : ''}${x.toFixed(1)}`;
const warm = rows.slice(1);
if (warm.length > 1) {
  const half = Math.floor(warm.length / 2);
  const floor = (key, from, to) => Math.min(...warm.slice(from, to).map((r) => r[key]));
  const minutes = (from, to) => (to - from === 1 ? `minute ${from + 2}` : `minutes ${from + 2}-${to + 1}`);
  for (const [key, name, bound] of [['rssMb', 'RSS', RSS_GROWTH_MB], ['heapMb', 'V8 heap', HEAP_GROWTH_MB]]) {
    const a = floor(key, 0, half);
    const b = floor(key, warm.length - half, warm.length);
    console.log(`${name} floor: ${a.toFixed(1)} MiB (${minutes(0, half)}) -> ${b.toFixed(1)} MiB (${minutes(warm.length - half, warm.length)}), ${signed(b - a)} MiB`);
    if (!(b - a <= bound)) problems.push(`${name} floor grew by ${(b - a).toFixed(1)} MiB (bound ${bound})`);
  }
  const fdGrowth = rows.at(-1).fds - rows[0].fds;
  console.log(`fds: ${rows[0].fds} after minute 1 -> ${rows.at(-1).fds} at the end (${signed(fdGrowth)})`);
  if (fdGrowth > FD_GROWTH) problems.push(`open fds grew by ${fdGrowth} (bound ${FD_GROWTH})`);
}
if (counts.s5 > 0) problems.push(`${counts.s5} responses were 5xx`);
if (counts.errors > 0) problems.push(`${counts.errors} requests failed at the client`);

// ---- clean up
const stopped = new Promise((r) => (gwExit ? r() : gw.once('exit', r)));
gw.kill('SIGTERM');
await Promise.race([stopped, sleep(15_000)]);
if (!gwExit) gw.kill('SIGKILL');
if (gwExit && gwExit.code !== 0) problems.push(`gateway exited with ${JSON.stringify(gwExit)} on SIGTERM`);
await new Promise((r) => upstream.close(r));
{
  const r = new Redis(REDIS_URL);
  let cursor = '0';
  do {
    const [next, keys] = await r.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
    if (keys.length) await r.del(...keys);
    cursor = next;
  } while (cursor !== '0');
  await r.quit();
}
if (dbName) {
  const c = new pg.Client({ connectionString: DATABASE_URL });
  await c.connect();
  await c.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
  await c.end();
}
if (problems.length === 0) rmSync(dir, { recursive: true, force: true });

console.log(`totals: ${counts.total} requests (${counts.s2} 2xx, ${counts.s4} 4xx, ${counts.s5} 5xx, ${counts.errors} client errors), ${ops.revocations} revocations, ${ops.reloads} reloads`);
if (problems.length) {
  console.log(`FAIL (files kept in ${dir}):`);
  for (const p of [...new Set(problems)].slice(0, 30)) console.log(`  - ${p}`);
  process.exit(1);
}
console.log('PASS');
