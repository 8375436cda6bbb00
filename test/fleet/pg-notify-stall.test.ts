import t from 'tap';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRawUpstream } from '../hardening/raw-upstream.js';
import { serviceSkip, tempDatabase } from '../helpers/services.js';
import { call, cli, cliJson, sleep, startFleet, stopFleet } from './helpers.js';

// PostgreSQL LISTEN/NOTIFY revocation (no Redis) over a connection that stalls without
// closing — a firewall's idle drop, a primary gone without a reset: no notification, no
// error. The gateway's pings stop being answered, and within two ping intervals plus the
// revocation timeout (3 s by default) its checks fail closed (503) instead of answering from
// a set that may be missing a revocation. Once the connection is back, the key made revoked
// meanwhile is refused as revoked. Checked from the upstream's side.

const DETECT_BOUND_MS = 4_000;

/** A TCP forwarder to PostgreSQL that can stop moving bytes without closing anything. */
async function stallableForwarder(target: URL): Promise<{ port: number; stall(on: boolean): void; close(): Promise<void> }> {
  let stalled = false;
  const pairs = new Set<net.Socket>();
  const server = net.createServer((c) => {
    const u = net.connect(Number(target.port || 5432), target.hostname);
    pairs.add(c).add(u);
    c.on('data', (d) => void (stalled || u.write(d)));
    u.on('data', (d) => void (stalled || c.write(d)));
    const end = () => {
      c.destroy();
      u.destroy();
    };
    for (const s of [c, u]) s.on('error', end).on('close', end).on('close', () => pairs.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    stall: (on) => void (stalled = on),
    close: () => {
      for (const s of pairs) s.destroy();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

const skip = await serviceSkip('postgres');
if (skip) t.plan(0, `skipping: ${skip}`);
else {
  t.test('a stalled LISTEN connection fails closed within its bound, then catches up', async (t) => {
    const db = await tempDatabase();
    t.teardown(() => db.drop());
    const up = await startRawUpstream();
    t.teardown(() => up.close());
    const fwd = await stallableForwarder(new URL(db.url));
    t.teardown(() => fwd.close());
    const dir = await mkdtemp(join(tmpdir(), 'pcl-stall-'));
    t.teardown(() => rm(dir, { recursive: true, force: true }));
    const via = new URL(db.url);
    via.port = String(fwd.port);
    const config = (store: string) => `
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
upstreams: { api: { url: "${up.url}" } }
roles: [basic]
store: { url: "${store}", poolSize: 2 }
revocation: { onError: deny }
routes:
  - match: { path: "/**" }
    minRole: basic
    upstream: api
`;
    const direct = join(dir, 'direct.yaml');
    await writeFile(direct, config(db.url));
    const [inst] = await startFleet(1, config(via.toString()));
    t.teardown(() => stopFleet([inst!]));
    const key = cliJson<{ id: string; key: string }>(await cli(direct, 'keys', 'create', '--subject', 'bob', '--role', 'basic', '--json'));
    const auth = { 'x-api-key': key.key };
    t.equal((await call(inst!, '/x', auth)).status, 200, 'the key works and is cached');

    fwd.stall(true);
    const rv = await cli(direct, 'keys', 'revoke', key.id);
    t.equal(rv.code, 0, 'revoked through a connection of its own');
    let closedAt: number | undefined;
    let code: string | undefined;
    while (performance.now() - rv.exitedAt < DETECT_BOUND_MS + 2_000) {
      const a = await call(inst!, '/x', auth);
      if (a.status !== 200) {
        closedAt = performance.now();
        code = a.code;
        break;
      }
      await sleep(50);
    }
    const ms = (closedAt ?? Infinity) - rv.exitedAt;
    t.equal(code, 'revocation-unavailable', 'refused 503 revocation-unavailable: the set may be stale');
    t.ok(ms <= DETECT_BOUND_MS, `the revoked key was admitted for ${ms.toFixed(0)} ms after the revocation (bound ${DETECT_BOUND_MS} ms)`);
    const lastAdmitted = Math.max(0, ...up.requests.filter((r) => r.headerLines.some((l) => l.toLowerCase() === `x-auth-key-id: ${key.id.toLowerCase()}`)).map((r) => r.at));
    t.ok(lastAdmitted <= performance.timeOrigin + rv.exitedAt + DETECT_BOUND_MS, 'nothing for the key reached the upstream past the bound');

    // Past the stalled ping's own timeout (5 s) the connection is dropped and replaced; the
    // set it last confirmed is not trusted again meanwhile.
    const whileStalled: number[] = [];
    for (const until = performance.now() + 4_000; performance.now() < until; await sleep(100)) whileStalled.push((await call(inst!, '/x', auth)).status);
    t.same(whileStalled.filter((s) => s === 200), [], `no admission while the connection stays stalled (${whileStalled.length} requests)`);
    fwd.stall(false);
    let answer = await call(inst!, '/x', auth);
    for (let i = 0; i < 200 && answer.code !== 'key-revoked'; i++) {
      await sleep(100);
      answer = await call(inst!, '/x', auth);
    }
    t.same([answer.status, answer.code], [401, 'key-revoked'], 'once the connection answers again (or is replaced), the key is refused as revoked');
  });
}
