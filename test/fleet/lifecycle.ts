import type { Test } from 'tap';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { startRawUpstream, type RawSeen, type RawUpstream } from '../hardening/raw-upstream.js';
import { REDIS_URL, redisPrefix, tempDatabase } from '../helpers/services.js';
import { call, cli, cliJson, fleetConfig, pollUntilDenied, sleep, startFleet, stopFleet, type Answer, type Instance } from './helpers.js';

// Every end of a key — the end of a rotation's grace, an expiry moved by `keys update`, a
// revocation by name — reaches the cached identities of two running gateways sharing one
// PostgreSQL database within 1 s; a change of grants reaches them as fast. What the upstream
// received is checked, not only what clients saw. Run with LISTEN/NOTIFY and with Redis by
// key-lifecycle-*.test.ts.

const BOUND_MS = 1_000;

const bearer = (v: string) => ({ authorization: `Bearer ${v}` });
/** performance.now() as wall-clock ms, to compare with the times the CLI prints. */
const wall = (perf: number) => performance.timeOrigin + perf;

function header(r: RawSeen, name: string): string | undefined {
  const line = r.headerLines.find((l) => l.toLowerCase().startsWith(`${name}:`));
  return line?.slice(name.length + 1).trim();
}

/** Upstream requests made on behalf of a key id. */
function upstreamFor(up: RawUpstream, keyId: string): RawSeen[] {
  return up.requests.filter((r) => header(r, 'x-auth-key-id') === keyId);
}

async function createKey(cfg: string, ...args: string[]): Promise<{ id: string; key: string; refreshToken?: string }> {
  return cliJson(await cli(cfg, 'keys', 'create', '--role', 'basic', '--json', ...args));
}

async function ready(inst: Instance): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const r = await request(`${inst.gw.adminUrl}/readyz`).catch(() => undefined);
    if (r !== undefined) {
      await r.body.text();
      if (r.statusCode === 200) return;
    }
    await sleep(50);
  }
  throw new Error(`${inst.name} never became ready`);
}

/** Polls one instance until `done` holds for its answer; the moment (performance.now()) it first did. */
async function pollUntil(inst: Instance, path: string, headers: Record<string, string>, done: (a: Answer) => boolean, deadlineMs = 20_000): Promise<{ at: number | undefined; last: Answer }> {
  const deadline = performance.now() + deadlineMs;
  let last: Answer = { status: 0, code: undefined, body: '' };
  while (performance.now() < deadline) {
    last = await call(inst, path, headers);
    if (done(last)) return { at: performance.now(), last };
    await sleep(2);
  }
  return { at: undefined, last };
}

async function refresh(inst: Instance, token: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const r = await request(`${inst.gw.url}/.portcullis/refresh`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ refreshToken: token }),
    dispatcher: inst.agent,
  });
  return { status: r.statusCode, body: (await r.body.json()) as Record<string, unknown> };
}

/** The suite on a fleet of two gateways sharing one fresh database (and Redis when `redis`). */
export async function lifecycleSuite(t: Test, backend: string, redis: boolean): Promise<void> {
  const db = await tempDatabase();
  t.teardown(() => db.drop());
  const up = await startRawUpstream();
  t.teardown(() => up.close());
  const prefix = redisPrefix();
  if (redis) t.teardown(() => prefix.clean());
  const dir = await mkdtemp(join(tmpdir(), 'pcl-lifecycle-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const yaml = fleetConfig({
    store: db.url,
    upstream: up.url,
    ...(redis ? { redis: REDIS_URL, keyPrefix: prefix.prefix } : {}),
    routes: ['  - match: { path: "/admin/**" }', '    minRole: admin', '    scopes: [ops]', '    upstream: api'],
  });
  const cfg = join(dir, 'gateway.config.yaml');
  await writeFile(cfg, yaml);
  const fleet = await startFleet(2, yaml);
  t.teardown(() => stopFleet(fleet));
  await Promise.all(fleet.map(ready));

  const warm = async (label: string, key: string, path = '/warm') => {
    for (const inst of fleet) {
      const a = await call(inst, path, bearer(key));
      t.equal(a.status, 200, `${backend}: ${inst.name} admits ${label} (cached from now on) ${a.code ?? ''}`);
    }
  };

  await t.test('the end of a rotation grace reaches cached copies', async (t) => {
    const old = await createKey(cfg, '--subject', 'rot');
    await warm('the key to rotate', old.key);
    const r = cliJson<{ id: string; key: string; graceUntil: string; rotatedFrom: string }>(await cli(cfg, 'keys', 'rotate', old.id, '--grace', '3s', '--json'));
    const graceEnd = Date.parse(r.graceUntil);
    for (const inst of fleet) {
      const a = await call(inst, '/in-grace', bearer(old.key));
      // On a slow machine the grace may be over already: then it must be refused as expired.
      t.same(Date.now() < graceEnd ? [a.status] : [a.status, a.code], Date.now() < graceEnd ? [200] : [401, 'key-expired'], `${inst.name}: the old key works during the grace`);
      t.equal((await call(inst, '/successor', bearer(r.key))).status, 200, `${inst.name}: the successor works`);
    }
    const pollFrom = Date.now();
    const denials = await pollUntilDenied(fleet, '/poll', bearer(old.key), { gapMs: 5, deadlineMs: 20_000 });
    for (const d of denials) {
      t.equal(d.code, 'key-expired', `${d.instance}: the old key is refused as expired once the grace is over`);
      if (pollFrom < graceEnd - 100) t.ok(d.allowed > 0, `${d.instance}: and admitted until then (${d.allowed} requests)`);
      if (d.at === undefined) continue;
      const late = wall(d.at) - graceEnd;
      t.comment(`${backend}: ${d.instance} refused the rotated key ${late.toFixed(0)} ms after its grace ended`);
      t.ok(late <= BOUND_MS, `${d.instance}: within ${BOUND_MS} ms of the grace's end (${late.toFixed(0)} ms)`);
      t.ok(late >= -50, `${d.instance}: not before the grace's end (${late.toFixed(0)} ms)`);
    }
    const through = upstreamFor(up, old.id);
    t.ok(through.length > 0, 'the upstream saw the old key during its grace');
    const lastAt = Math.max(...through.map((x) => x.at));
    t.ok(lastAt <= graceEnd + BOUND_MS, `the upstream saw nothing of the old key later than ${BOUND_MS} ms after the grace (${(lastAt - graceEnd).toFixed(0)} ms)`);
    const n = through.length;
    for (const inst of fleet) t.equal((await call(inst, '/after', bearer(old.key))).code, 'key-expired', `${inst.name}: stays refused`);
    t.equal(upstreamFor(up, old.id).length, n, 'and nothing more reaches the upstream');
  });

  await t.test('keys update changes grants and the end in place, on every instance', async (t) => {
    const k = await createKey(cfg, '--subject', 'upd', '--scopes', 'read');
    await warm('the key to update', k.key);
    for (const inst of fleet) t.equal((await call(inst, '/admin/x', bearer(k.key))).code, 'authorisation-required', `${inst.name}: not an admin yet`);
    const run = await cli(cfg, 'keys', 'update', k.id, '--role', 'admin', '--scopes', 'read,ops', '--json');
    const updated = cliJson<{ id: string; role: string; scopes: string[] }>(run);
    t.same([updated.id, updated.role, updated.scopes], [k.id, 'admin', ['read', 'ops']], 'same id, new grants');
    for (const inst of fleet) {
      const p = await pollUntil(inst, '/admin/x', bearer(k.key), (a) => a.status === 200);
      t.ok(p.at !== undefined, `${inst.name}: the same key is now an admin`);
      if (p.at !== undefined) t.ok(p.at - run.exitedAt <= BOUND_MS, `${inst.name}: within ${BOUND_MS} ms of the CLI returning (${(p.at - run.exitedAt).toFixed(0)} ms)`);
    }
    const admitted = up.requests.filter((r) => r.requestLine.startsWith('GET /admin/x ') && header(r, 'x-auth-key-id') === k.id);
    t.equal(admitted.length, 2, 'the upstream got the admin request once per instance');
    for (const r of admitted) t.same([header(r, 'x-auth-role'), header(r, 'x-auth-scopes')], ['admin', 'read ops'], 'with the new role and scopes');

    const run2 = await cli(cfg, 'keys', 'update', k.id, '--expires', '1s', '--json');
    const end = Date.parse(cliJson<{ expiresAt: string }>(run2).expiresAt);
    const denials = await pollUntilDenied(fleet, '/poll', bearer(k.key), { gapMs: 5, deadlineMs: 20_000 });
    for (const d of denials) {
      t.equal(d.code, 'key-expired', `${d.instance}: refused once the new expiry passed`);
      if (d.at !== undefined) t.ok(wall(d.at) - end <= BOUND_MS, `${d.instance}: within ${BOUND_MS} ms of the new expiry (${(wall(d.at) - end).toFixed(0)} ms)`);
    }
    const lastAt = Math.max(...upstreamFor(up, k.id).map((x) => x.at));
    t.ok(lastAt <= end + BOUND_MS, `the upstream saw nothing of it later than ${BOUND_MS} ms after the new expiry`);

    const gone = await cli(cfg, 'keys', 'update', k.id, '--role', 'basic');
    t.equal(gone.code, 1, 'an expired key cannot be updated');
    t.match(gone.err, /expired: only a working key can be updated/);
  });

  await t.test('keys revoke --name ends a job\'s keys on every instance', async (t) => {
    const [a, b, other] = await Promise.all([
      createKey(cfg, '--subject', 'ci-a', '--name', 'job-7'),
      createKey(cfg, '--subject', 'ci-b', '--name', 'job-7'),
      createKey(cfg, '--subject', 'ci-a', '--name', 'job-8'),
    ]);
    await warm('job-7 a', a.key);
    await warm('job-7 b', b.key);
    await warm('job-8', other.key);
    const polls = [pollUntilDenied(fleet, '/poll', bearer(a.key), { deadlineMs: 20_000 }), pollUntilDenied(fleet, '/poll', bearer(b.key), { deadlineMs: 20_000 })];
    const run = await cli(cfg, 'keys', 'revoke', '--name', 'job-7', '--json');
    t.same(cliJson<{ revoked: string[] }>(run).revoked.sort(), [a.id, b.id].sort(), 'both keys of the job are revoked');
    for (const d of (await Promise.all(polls)).flat()) {
      t.equal(d.code, 'key-revoked', `${d.instance}: refused as revoked`);
      if (d.at !== undefined) t.ok(d.at - run.exitedAt <= BOUND_MS, `${d.instance}: within ${BOUND_MS} ms of the CLI returning (${(d.at - run.exitedAt).toFixed(0)} ms)`);
    }
    const seen = up.requests.length;
    for (const inst of fleet) {
      t.equal((await call(inst, '/after', bearer(a.key))).code, 'key-revoked');
      t.equal((await call(inst, '/after', bearer(other.key))).status, 200, `${inst.name}: a key of another name still works`);
    }
    t.same(up.requests.slice(seen).map((r) => header(r, 'x-auth-key-id')), [other.id, other.id], 'only the other key reached the upstream');
  });

  await t.test('rotating a refreshable key spends its refresh token', async (t) => {
    const k = await createKey(cfg, '--subject', 'spa', '--refreshable');
    t.type(k.refreshToken, 'string', 'created with a refresh token');
    const r = cliJson<{ id: string; key: string; refreshToken?: string }>(await cli(cfg, 'keys', 'rotate', k.id, '--grace', '1m', '--json'));
    t.type(r.refreshToken, 'string', 'the successor comes with its own refresh token');
    t.not(r.refreshToken, k.refreshToken);
    const [gw1, gw2] = fleet as [Instance, Instance];
    for (let i = 0; i < 2; i++) {
      const spent = await refresh(gw1, k.refreshToken!);
      t.same([spent.status, spent.body.code], [401, 'refresh-invalid'], `the old refresh token mints nothing (attempt ${i + 1})`);
    }
    t.equal((await call(gw2, '/in-grace', bearer(k.key))).status, 200, 'presenting it did not end the old key\'s grace');
    t.equal((await call(gw2, '/successor', bearer(r.key))).status, 200, 'nor the successor');
    const fresh = await refresh(gw1, r.refreshToken!);
    t.equal(fresh.status, 200, 'the successor\'s refresh token works');
    t.equal((await call(gw2, '/minted', bearer(String(fresh.body.key)))).status, 200, 'and its key works on the other instance');
    const keys = cliJson<Array<{ id: string; subject: string }>>(await cli(cfg, 'keys', 'list', '--subject', 'spa', '--json'));
    t.equal(keys.length, 3, 'the original, its successor, and one refreshed key: the rotated key minted none');
  });
}

