import t from 'tap';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { Agent, request } from 'undici';
import { serviceSkip, tempDatabase } from '../helpers/services.js';
import { startUpstream } from '../helpers/upstream.js';
import { cli, cliJson, fleetConfig, fleetJwt, sleep, startFleet, stopFleet } from './helpers.js';

// A private Redis (never the shared one) under one gateway process with onError: deny.
// Steady traffic with a working key, a key revoked before the outage and a JWT revoked
// before the outage. Redis is killed: the working key gets 503 revocation-unavailable with
// Retry-After and the revoked credentials never get through. Redis comes back empty on the
// same port: the gateway reconnects by itself, re-seeds Redis from the store, and serves
// the working key again while both revoked credentials stay refused.

const REVOCATION_TIMEOUT_MS = 300;
/** A killed Redis closes its sockets: checks fail at once, bounded by the revocation timeout. */
const DETECT_BOUND_MS = REVOCATION_TIMEOUT_MS + 1_000;
/** Reconnect backoff is capped at 2 s; then a re-seed from the store. */
const RECOVERY_BOUND_MS = 6_000;

async function sparePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** `redis-server` on 127.0.0.1:port without persistence, so a restart comes back empty. */
async function startRedis(port: number): Promise<ChildProcess> {
  for (let attempt = 0; ; attempt++) {
    const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const started = await new Promise<boolean>((resolve) => {
      let out = '';
      const timer = setTimeout(() => resolve(false), 10_000);
      child.stdout!.on('data', (d) => {
        out += d;
        if (out.includes('Ready to accept connections')) {
          clearTimeout(timer);
          resolve(true);
        }
      });
      child.once('exit', () => {
        clearTimeout(timer);
        resolve(false);
      });
    });
    if (started) return child;
    child.kill('SIGKILL');
    // The port was ours a moment ago; the kernel may still hold it briefly.
    if (attempt >= 20) throw new Error(`redis-server did not start on port ${port}`);
    await sleep(100);
  }
}

function kill(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

interface Sample {
  at: number;
  status: number;
  code: string | undefined;
  retryAfter: string | undefined;
}

/** One request after another (10 ms apart) with one credential, each answer recorded. */
class Stream {
  readonly samples: Sample[] = [];
  #stop = false;
  readonly done: Promise<void>;

  constructor(url: string, agent: Agent, credential: string) {
    this.done = (async () => {
      while (!this.#stop) {
        try {
          const r = await request(`${url}/steady`, { headers: { authorization: `Bearer ${credential}` }, dispatcher: agent, headersTimeout: 5_000, bodyTimeout: 5_000 });
          const text = await r.body.text();
          let code: string | undefined;
          if (r.statusCode >= 400) code = (JSON.parse(text) as { code?: string }).code;
          const ra = r.headers['retry-after'];
          this.samples.push({ at: performance.now(), status: r.statusCode, code, retryAfter: typeof ra === 'string' ? ra : undefined });
        } catch {
          this.samples.push({ at: performance.now(), status: 0, code: 'no-answer', retryAfter: undefined });
        }
        await sleep(10);
      }
    })();
  }

  /** Resolves with the first sample at or after `since` that satisfies `pred`, or undefined after `ms`. */
  async waitFor(pred: (s: Sample) => boolean, since: number, ms: number): Promise<Sample | undefined> {
    const end = performance.now() + ms;
    for (;;) {
      const hit = this.samples.find((s) => s.at >= since && pred(s));
      if (hit !== undefined || performance.now() > end) return hit;
      await sleep(5);
    }
  }

  stop(): Promise<void> {
    this.#stop = true;
    return this.done;
  }
}

/** The private Redis needs the `redis-server` binary; under CI its absence is a failure. */
function redisServerSkip(): string | false {
  const r = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
  if (r.status === 0) return false;
  const why = `redis-server is not runnable (${r.error?.message ?? r.stderr})`;
  if (process.env.CI === 'true') throw new Error(`${why}; it is required under CI`);
  return why;
}

const skip = (await serviceSkip('postgres')) || redisServerSkip();
if (skip) t.plan(0, `skipping: ${skip}`);
else {
  await t.test('Redis killed and restarted empty under a running gateway (onError: deny)', async (t) => {
    const db = await tempDatabase();
    t.teardown(() => db.drop());
    const up = await startUpstream();
    t.teardown(() => up.close());
    const dir = await mkdtemp(join(tmpdir(), 'pcl-outage-'));
    t.teardown(() => rm(dir, { recursive: true, force: true }));

    const port = await sparePort();
    let redis = await startRedis(port);
    t.teardown(() => kill(redis));
    const redisUrl = `redis://127.0.0.1:${port}`;
    const prefix = 'pcl-outage:';
    const yaml = fleetConfig({ store: db.url, upstream: up.url, redis: redisUrl, keyPrefix: prefix, onError: 'deny', revocationTimeout: `${REVOCATION_TIMEOUT_MS}ms` });
    const configFile = join(dir, 'gateway.config.yaml');
    await writeFile(configFile, yaml);

    const [inst] = await startFleet(1, yaml);
    t.teardown(() => stopFleet([inst!]));
    const gw = inst!.gw;
    const pid = gw.child.pid;
    const ready = async () => (await request(`${gw.adminUrl}/readyz`)).statusCode;

    // Credentials, and the revocations made before the outage (through the CLI, as an operator would).
    const good = cliJson<{ id: string; key: string }>(await cli(configFile, 'keys', 'create', '--subject', 'alice', '--role', 'basic', '--json'));
    const doomed = cliJson<{ id: string; key: string }>(await cli(configFile, 'keys', 'create', '--subject', 'mallory', '--role', 'basic', '--json'));
    const doomedJwt = await fleetJwt('eve');
    t.equal((await cli(configFile, 'keys', 'revoke', doomed.id)).code, 0, 'key revoked before the outage');
    t.equal((await cli(configFile, 'tokens', 'revoke', '--jti', doomedJwt.jti)).code, 0, 'JWT revoked before the outage');
    t.equal(await ready(), 200, 'ready before the outage');

    const agent = new Agent({ connections: 4 });
    t.teardown(() => agent.close());
    const goodStream = new Stream(gw.url, agent, good.key);
    const doomedStream = new Stream(gw.url, agent, doomed.key);
    const jwtStream = new Stream(gw.url, agent, doomedJwt.token);
    t.teardown(() => Promise.all([goodStream.stop(), doomedStream.stop(), jwtStream.stop()]));

    const t0 = performance.now();
    t.ok(await goodStream.waitFor((s) => s.status === 200, t0, 5_000), 'the working key is served before the outage');
    await sleep(300);

    // Outage.
    await kill(redis);
    const killedAt = performance.now();
    const first503 = await goodStream.waitFor((s) => s.status !== 200, killedAt, 5_000);
    t.ok(first503, 'the working key is refused once Redis is gone');
    t.same([first503?.status, first503?.code], [503, 'revocation-unavailable'], 'with 503 revocation-unavailable');
    t.ok(Number(first503?.retryAfter) > 0, `with Retry-After (${first503?.retryAfter})`);
    const detectMs = (first503?.at ?? Infinity) - killedAt;
    t.ok(detectMs <= DETECT_BOUND_MS, `refused ${detectMs.toFixed(0)} ms after Redis died (bound ${DETECT_BOUND_MS} ms)`);
    t.equal(await ready(), 503, '/readyz reports the outage');
    await sleep(1_500);
    const during = goodStream.samples.filter((s) => s.at >= (first503?.at ?? Infinity));
    t.ok(during.length > 10, `steady traffic during the outage (${during.length} requests)`);
    t.ok(during.every((s) => s.status === 503 && s.code === 'revocation-unavailable' && Number(s.retryAfter) > 0), 'every request during the outage: 503 revocation-unavailable with Retry-After');

    // Redis back, empty, on the same port; the gateway is not restarted.
    redis = await startRedis(port);
    const restartedAt = performance.now();
    const back = await goodStream.waitFor((s) => s.status === 200, restartedAt, RECOVERY_BOUND_MS + 2_000);
    t.ok(back, 'the working key is served again without restarting the gateway');
    const recoveryMs = (back?.at ?? Infinity) - restartedAt;
    t.ok(recoveryMs <= RECOVERY_BOUND_MS, `served again ${recoveryMs.toFixed(0)} ms after Redis accepted connections (bound ${RECOVERY_BOUND_MS} ms)`);
    t.equal(gw.child.pid, pid, 'same gateway process');
    t.equal(gw.child.exitCode, null, 'still running');
    let readyAgain = 0;
    for (let i = 0; i < 50 && (readyAgain = await ready()) !== 200; i++) await sleep(100);
    t.equal(readyAgain, 200, '/readyz reports ready again');

    // The restarted Redis was re-seeded from the store before it was trusted.
    const r = new Redis(redisUrl);
    t.teardown(() => void r.disconnect());
    t.equal(await r.exists(`${prefix}seeded`), 1, 'seed sentinel written');
    t.equal(await r.exists(`${prefix}r:key:${doomed.id}`), 1, "the revoked key's marker is back");
    t.equal(await r.exists(`${prefix}r:jti:${doomedJwt.jti}`), 1, "the revoked JWT's marker is back");
    await sleep(500);
    const settled = performance.now();
    await Promise.all([goodStream.stop(), doomedStream.stop(), jwtStream.stop()]);

    // Across the whole run the revoked credentials never got through.
    for (const [what, stream, code] of [['revoked key', doomedStream, 'key-revoked'], ['revoked JWT', jwtStream, 'token-revoked']] as const) {
      const ok = stream.samples.filter((s) => s.status >= 200 && s.status < 300);
      t.equal(ok.length, 0, `${what}: no 2xx in ${stream.samples.length} requests`);
      const before = stream.samples.filter((s) => s.at < killedAt);
      const afterRecovery = stream.samples.filter((s) => back !== undefined && s.at > back.at + 50 && s.at <= settled + 1_000);
      // A check that outlives the (short) revocation timeout on a busy machine is refused 503,
      // which is fail-closed too; what matters is that the credential is refused, as revoked.
      const failClosed = (s: { status: number; code?: string | undefined }) => (s.status === 401 && s.code === code) || (s.status === 503 && s.code === 'revocation-unavailable');
      t.ok(before.some((s) => s.status === 401 && s.code === code) && before.every(failClosed), `${what}: ${code} before the outage (${JSON.stringify(before.map((s) => `${s.status} ${s.code ?? ''}`))})`);
      t.ok(afterRecovery.length > 0 && afterRecovery.every((s) => s.status === 401 && s.code === code), `${what}: still ${code} after Redis came back empty (${afterRecovery.length} requests)`);
      const other = stream.samples.filter((s) => !(s.status === 401 && s.code === code) && !(s.status === 503 && s.code === 'revocation-unavailable'));
      t.same(other, [], `${what}: only ${code} or revocation-unavailable, ever`);
    }
    const afterBack = goodStream.samples.filter((s) => back !== undefined && s.at >= back.at);
    t.ok(afterBack.length > 10 && afterBack.every((s) => s.status === 200), `working key: 200 on every request since recovery (${afterBack.length})`);
    t.comment(`redis outage: refused ${detectMs.toFixed(0)} ms after Redis was killed; served again ${recoveryMs.toFixed(0)} ms after Redis restarted (empty, re-seeded from the store)`);
  });
}
