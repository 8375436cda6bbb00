import t from 'tap';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { startUpstream } from '../../helpers/upstream.js';
import { spawnGateway, workerPidsOf, type GatewayProcess } from '../../helpers/spawn.js';
import { cli, cliJson, sleep } from '../../fleet/helpers.js';

// `serve --workers 2` on the embedded store's file, no Redis: two worker processes share the
// port, the primary answers the admin listener for both, limits are counted once for both,
// a revocation reaches both, a dead worker is replaced, SIGHUP and SIGTERM reach all.

const up = await startUpstream();
t.teardown(() => up.close());
const dir = await mkdtemp(join(tmpdir(), 'pcl-workers-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));
const store = `sqlite://${join(dir, 'portcullis.db')}`;

function yaml(extraRoute = ''): string {
  return `
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0, token: "admin-token-for-the-workers-test-0123456789" }
store: { url: "${store}" }
upstreams: { api: { url: "${up.url}" } }
workers: 2
rateLimits:
  policies:
    - { name: six, limit: 6, window: 1m, by: global }
routes:
${extraRoute}  - match: { path: "/limited" }
    public: true
    rateLimit: [six]
    upstream: api
  - match: { path: "/public/**" }
    public: true
    upstream: api
  - match: { path: "/**" }
    minRole: basic
    upstream: api
`;
}

const configFile = join(dir, 'gateway.config.yaml');
await writeFile(configFile, yaml());
const gw: GatewayProcess = await spawnGateway(yaml(), { timeoutMs: 60_000 });
t.teardown(() => gw.stop('SIGKILL'));
const admin = { authorization: 'Bearer admin-token-for-the-workers-test-0123456789' };

/** One GET on a connection of its own, so the primary hands it to either worker. */
async function fresh(path: string, headers: Record<string, string> = {}): Promise<number> {
  const agent = new Agent({ pipelining: 0 });
  try {
    const r = await request(gw.url + path, { headers: { ...headers, connection: 'close' }, dispatcher: agent });
    await r.body.text();
    return r.statusCode;
  } finally {
    await agent.close();
  }
}

const workerPids = (): Set<number> => workerPidsOf(gw.lines);

function servedBy(): Set<number> {
  const pids = new Set<number>();
  for (const l of gw.lines) {
    try {
      const j = JSON.parse(l);
      if (j.route !== undefined && j.status !== undefined) pids.add(j.pid);
    } catch { /* not JSON */ }
  }
  return pids;
}

async function metric(name: string): Promise<number> {
  const r = await request(`${gw.adminUrl}/metrics`);
  const text = await r.body.text();
  let sum = 0;
  for (const line of text.split('\n')) if (line.startsWith(name) && /^[a-z_]+(\{[^}]*\})? /.test(line)) sum += Number(line.split(' ').pop());
  return sum;
}

t.test('two workers serve the port; the primary serves neither', async (t) => {
  const pids = workerPids();
  t.equal(pids.size, 2, 'two workers listening');
  t.notOk(pids.has(gw.child.pid!), 'neither is the primary');
  const statuses = await Promise.all([...Array(16)].map(() => fresh('/public/ping')));
  t.same(new Set(statuses), new Set([200]));
  await sleep(200);
  const served = servedBy();
  t.notOk(served.has(gw.child.pid!), 'the primary forwarded nothing itself');
  t.equal([...served].filter((p) => pids.has(p)).length, 2, 'both workers served requests');
  t.equal(await metric('portcullis_requests_total'), 16, '/metrics sums both workers');
  const ready = await request(`${gw.adminUrl}/readyz`);
  const body = (await ready.body.json()) as { checks?: Record<string, unknown> };
  t.equal(ready.statusCode, 200);
  t.ok(JSON.stringify(body).includes('workers'), 'readiness reports the workers');
});

t.test('limits without Redis are counted once for all workers', async (t) => {
  const statuses = await Promise.all([...Array(12)].map(() => fresh('/limited')));
  t.equal(statuses.filter((s) => s === 200).length, 6, 'six admitted of twelve');
  t.equal(statuses.filter((s) => s === 429).length, 6);
});

t.test("a key's own rate limit and its credits are counted once for all workers", async (t) => {
  const post = async (body: unknown) => {
    const r = await request(`${gw.adminUrl}/admin/v1/keys`, { method: 'POST', headers: { ...admin, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return (await r.body.json()) as { id: string; key: string };
  };
  const seen = (id: string) => up.seen.filter((s) => s.headers['x-auth-key-id'] === id).length;
  const limited = await post({ subject: 'worker-rl', role: 'basic', rateLimit: '5/1h' });
  const rl = await Promise.all([...Array(12)].map(() => fresh('/private', { 'x-api-key': limited.key })));
  t.equal(rl.filter((s) => s === 200).length, 5, 'five admitted of twelve: one bucket for both workers');
  t.equal(seen(limited.id), 5);
  const credited = await post({ subject: 'worker-uses', role: 'basic', uses: 4 });
  const uses = await Promise.all([...Array(12)].map(() => fresh('/private', { 'x-api-key': credited.key })));
  t.equal(uses.filter((s) => s === 200).length, 4, 'four admitted of twelve: the credits are spent in the store');
  t.equal(uses.filter((s) => s === 429).length, 8);
  t.equal(seen(credited.id), 4, 'and the upstream saw four');
});

t.test('a key revoked through the admin API is refused by every worker within 1 s', async (t) => {
  const created = await request(`${gw.adminUrl}/admin/v1/keys`, { method: 'POST', headers: { ...admin, 'content-type': 'application/json' }, body: JSON.stringify({ subject: 'worker-user', role: 'basic' }) });
  const k = (await created.body.json()) as { id: string; key: string };
  t.equal(created.statusCode, 201, JSON.stringify(k));
  const auth = { 'x-api-key': k.key };
  const warm = await Promise.all([...Array(8)].map(() => fresh('/private', auth)));
  t.same(new Set(warm), new Set([200]), 'both workers admit (and cache) the key');
  const revokedAt = performance.now();
  const r = await request(`${gw.adminUrl}/admin/v1/keys/${encodeURIComponent(k.id)}/revoke`, { method: 'POST', headers: admin });
  await r.body.text();
  t.ok(r.statusCode < 300, `revoke answered ${r.statusCode}`);
  let refusedEverywhere = -1;
  while (performance.now() - revokedAt < 3_000) {
    const round = await Promise.all([...Array(8)].map(() => fresh('/private', auth)));
    if (round.every((s) => s === 401)) {
      refusedEverywhere = performance.now() - revokedAt;
      break;
    }
    await sleep(50);
  }
  t.ok(refusedEverywhere >= 0 && refusedEverywhere <= 1_000, `refused on every connection after ${refusedEverywhere.toFixed(0)} ms`);
  const listed = cliJson<{ id: string; status: string }[]>(await cli(configFile, 'keys', 'list', '--json'));
  t.equal(listed.find((x) => x.id === k.id)?.status, 'revoked', 'the CLI sees the same file');
});

t.test('a dead worker is replaced, logged and counted', async (t) => {
  const [victim] = [...workerPids()];
  process.kill(victim!, 'SIGKILL');
  const until = Date.now() + 15_000;
  while (Date.now() < until && (workerPids().size < 2 || workerPids().has(victim!))) await sleep(100);
  const pids = workerPids();
  t.equal(pids.size, 2, 'two workers again');
  t.notOk(pids.has(victim!), 'the dead one is gone');
  t.ok(gw.lines.some((l) => l.includes('worker died; starting a replacement')), 'the death is logged');
  t.equal(await metric('portcullis_worker_restarts_total'), 1);
  const statuses = await Promise.all([...Array(8)].map(() => fresh('/public/ping')));
  t.same(new Set(statuses), new Set([200]));
});

t.test('SIGHUP reloads every worker', async (t) => {
  t.equal(await fresh('/fresh-route'), 401, 'before: the catch-all route wants a credential');
  await writeFile(gw.configFile, yaml('  - match: { path: "/fresh-route" }\n    public: true\n    upstream: api\n'));
  gw.child.kill('SIGHUP');
  const until = Date.now() + 5_000;
  let statuses: number[] = [];
  while (Date.now() < until) {
    statuses = await Promise.all([...Array(8)].map(() => fresh('/fresh-route')));
    if (statuses.every((s) => s === 200)) break;
    await sleep(100);
  }
  t.same(new Set(statuses), new Set([200]), 'the new route is public on every worker');
});

/** Kills one worker and waits for its replacement to listen; resolves with the replacement's pid. */
async function replaceOne(whileStarting?: () => Promise<void>): Promise<number> {
  const before = workerPids();
  const [victim] = [...before];
  process.kill(victim!, 'SIGKILL');
  const until = Date.now() + 20_000;
  while (Date.now() < until && workerPids().has(victim!)) await sleep(20);
  await whileStarting?.();
  while (Date.now() < until && workerPids().size < 2) await sleep(50);
  const added = [...workerPids()].filter((p) => !before.has(p));
  if (added.length !== 1) throw new Error(`expected one replacement worker, got ${added.join(', ') || 'none'}`);
  return added[0]!;
}

/** The primary's child processes now. */
function children(): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(gw.child.pid)]).toString().trim().split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

async function readyz(): Promise<number> {
  const r = await request(`${gw.adminUrl}/readyz`);
  await r.body.text();
  return r.statusCode;
}

const publicRoute = (path: string) => `  - match: { path: "${path}" }\n    public: true\n    upstream: api\n`;

t.test('a replacement worker serves the config the primary applied, not the file as edited since', async (t) => {
  // The file now drops /fresh-route and adds /unapplied, and nobody sent SIGHUP.
  await writeFile(gw.configFile, yaml(publicRoute('/unapplied')));
  const pid = await replaceOne();
  const statuses = await Promise.all([...Array(16)].map(() => fresh('/unapplied')));
  t.same(new Set(statuses), new Set([401]), 'the unapplied public route is public on no worker');
  const applied = await Promise.all([...Array(16)].map(() => fresh('/fresh-route')));
  t.same(new Set(applied), new Set([200]), 'the applied one still is, on every worker');
  await sleep(200);
  t.ok(servedBy().has(pid), 'the replacement served some of them');
  t.equal(await readyz(), 200);
});

t.test('a reload sent while a replacement worker starts reaches it before it reports listening', async (t) => {
  // Holding the store's write lock keeps the replacement starting while the reload is sent.
  const { DatabaseSync } = await import('node:sqlite');
  const db = new DatabaseSync(join(dir, 'portcullis.db'));
  let held = false;
  t.teardown(() => {
    if (held) db.exec('ROLLBACK');
    db.close();
  });
  const sentAt: number[] = [];
  const pid = await replaceOne(async () => {
    db.exec('BEGIN IMMEDIATE');
    held = true;
    // Once the replacement process exists and has had time to ask for the config.
    const known = new Set(workerPids());
    for (let i = 0; i < 200 && children().every((c) => known.has(c)); i++) await sleep(20);
    await sleep(300);
    await writeFile(gw.configFile, yaml(publicRoute('/during-start')));
    gw.child.kill('SIGHUP');
    sentAt.push(gw.lines.length);
    await sleep(500);
    t.equal(await readyz(), 503, 'not ready while the replacement starts');
    db.exec('COMMIT');
    held = false;
  });
  const mine = gw.lines.slice(sentAt[0]).map((l) => {
    try {
      return JSON.parse(l) as { pid?: number; msg?: string; generation?: number };
    } catch {
      return {};
    }
  }).filter((j) => j.pid === pid);
  t.comment(JSON.stringify(mine.filter((j) => /worker (listening|reloaded)/.test(j.msg ?? '')).map((j) => [j.msg, j.generation])));
  const statuses = await Promise.all([...Array(16)].map(() => fresh('/during-start')));
  t.same(new Set(statuses), new Set([200]), 'the reloaded route is public on every worker');
  await sleep(200);
  t.ok(servedBy().has(pid), 'the replacement served some of them');
  let ready = 0;
  for (let i = 0; i < 50 && ready !== 200; i++) {
    ready = await readyz();
    if (ready !== 200) await sleep(100);
  }
  t.equal(ready, 200, 'ready once every worker serves the reloaded config');
});

t.test('a replacement after a reload that changed a restart-only section opens what the instance runs on', async (t) => {
  const created = await request(`${gw.adminUrl}/admin/v1/keys`, { method: 'POST', headers: { ...admin, 'content-type': 'application/json' }, body: JSON.stringify({ subject: 'restart-only', role: 'basic' }) });
  const k = (await created.body.json()) as { key: string };
  t.equal(created.statusCode, 201);
  // Another store file: a reload logs that it takes a restart, and every process keeps the
  // store it runs on. A replacement must too (the key lives in that store only).
  await writeFile(gw.configFile, yaml().replace(store, `sqlite://${join(dir, 'other.db')}`));
  gw.child.kill('SIGHUP');
  await sleep(500);
  t.ok(gw.lines.some((l) => l.includes('config changes that take a restart: store.url')), 'the reload says store.url takes a restart');
  await replaceOne();
  const statuses = await Promise.all([...Array(16)].map(() => fresh('/private', { 'x-api-key': k.key })));
  t.same(new Set(statuses), new Set([200]), 'the key is admitted on every connection: the replacement opened the running store');
  await writeFile(gw.configFile, yaml());
  gw.child.kill('SIGHUP');
  await sleep(300);
});

t.test('SIGTERM drains every worker and exits 0', async (t) => {
  const pids = [...workerPids()];
  const code = await gw.stop('SIGTERM');
  t.equal(code, 0);
  for (const pid of pids) {
    let alive = true;
    try {
      process.kill(pid, 0);
    } catch {
      alive = false;
    }
    t.notOk(alive, `worker ${pid} exited`);
  }
});
