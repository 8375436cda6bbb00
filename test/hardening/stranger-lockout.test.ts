import t, { type Test } from 'tap';
import { Agent, request } from 'undici';
import { parseConfig } from '../../src/config/load.js';
import { formatKey, generateKey, generateRefreshToken } from '../../src/keys/format.js';
import { startPortcullis, type Portcullis } from '../../src/gateway.js';
import { memoryLogger } from '../helpers/gateway.js';
import { serviceSkip, tempDatabase } from '../helpers/services.js';
import { startRawUpstream, type RawSeen } from './raw-upstream.js';

// A key id is public (logs, x-auth-key-id, the key itself) and a well-formed forgery is cheap.
// Strangers sending forgeries for it from other addresses must never get its holder refused:
// a holder that has not failed itself is verified even while they flood, on a gateway that has
// never seen its key before. Meanwhile argon2 work stays bounded: each attacking address gets
// at most `failedAttempts.max` verifications, one once the key id is under attack, and never
// more than `maxConcurrentVerifications` run at once. The upstream sees the holder only.

const MAX = 3;
const skip = await serviceSkip('postgres');

function header(r: RawSeen, name: string): string | undefined {
  return r.headerLines.find((l) => l.toLowerCase().startsWith(`${name}:`))?.slice(name.length + 1).trim();
}

interface Client {
  agent: Agent;
  headers: Record<string, string>;
}

/** A client connecting from `localAddress` (any 127.0.0.x is loopback), optionally naming another address in X-Forwarded-For. */
function client(t: Test, localAddress: string, forwardedFor?: string): Client {
  const agent = new Agent({ localAddress, connections: 8 });
  t.teardown(() => agent.close());
  return { agent, headers: forwardedFor === undefined ? {} : { 'x-forwarded-for': forwardedFor } };
}

async function get(base: string, c: Client, key: string): Promise<{ status: number; code?: string }> {
  const r = await request(`${base}/data`, { dispatcher: c.agent, headers: { ...c.headers, authorization: `Bearer ${key}` } });
  const body = await r.body.text();
  return r.statusCode === 200 ? { status: 200 } : { status: r.statusCode, code: (JSON.parse(body) as { code: string }).code };
}

async function refresh(base: string, c: Client, token: string): Promise<{ status: number; code?: string }> {
  const r = await request(`${base}/.portcullis/refresh`, {
    method: 'POST',
    dispatcher: c.agent,
    headers: { ...c.headers, 'content-type': 'application/json' },
    body: JSON.stringify({ refreshToken: token }),
  });
  const body = (await r.body.json()) as { code?: string };
  return r.statusCode === 200 ? { status: 200 } : { status: r.statusCode, code: body.code! };
}

interface Flood {
  sent: number;
  codes: Map<string, number>;
  /** Most argon2 runs seen at once, and most waiting. */
  peakActive: number;
  peakQueued: number;
}

/** Sends forgeries from every attacker until `stop()` resolves; `lanes` in flight per attacker. */
function flood(p: Portcullis, attackers: readonly Client[], forge: (c: Client) => Promise<{ status: number; code?: string }>, lanes = 4): { done: Promise<Flood>; stop(): void } {
  let running = true;
  const f: Flood = { sent: 0, codes: new Map(), peakActive: 0, peakQueued: 0 };
  const sample = setInterval(() => {
    const load = p.authenticators().apiKey!.verificationLoad;
    f.peakActive = Math.max(f.peakActive, load.active);
    f.peakQueued = Math.max(f.peakQueued, load.queued);
  }, 2);
  const lane = async (c: Client) => {
    while (running) {
      const r = await forge(c);
      f.sent++;
      f.codes.set(r.code ?? String(r.status), (f.codes.get(r.code ?? String(r.status)) ?? 0) + 1);
    }
  };
  const done = Promise.all(attackers.flatMap((c) => Array.from({ length: lanes }, () => lane(c)))).then(() => {
    clearInterval(sample);
    return f;
  });
  return { done, stop: () => void (running = false) };
}

const codesText = (m: Map<string, number>) => [...m].map(([k, v]) => `${v} ${k}`).join(', ');

if (skip) t.plan(0, `skipping: ${skip}`);
else {
  const db = await tempDatabase();
  t.teardown(() => db.drop());
  const up = await startRawUpstream();
  t.teardown(() => up.close());
  const yaml = [
    'listen: { host: 127.0.0.1, port: 0 }',
    'admin: { host: 127.0.0.1, port: 0 }',
    'upstreams:',
    `  api: { url: "${up.url}" }`,
    'roles: [basic]',
    `store: { url: "${db.url}", poolSize: 4 }`,
    'trustedProxies: [127.0.0.9/32]',
    'apiKeys:',
    '  hash: { memoryCost: 19456, timeCost: 2, parallelism: 1 }',
    '  maxConcurrentVerifications: 2',
    '  verificationQueue: 64',
    // No hold on a 429: the flood is as fast as it can be.
    `  failedAttempts: { max: ${MAX}, window: 1m, delay: 0ms }`,
    'routes:',
    '  - match: { path: "/**" }',
    '    minRole: basic',
    '    upstream: api',
    '',
  ].join('\n');
  const { logger } = memoryLogger('warn');
  const p = await startPortcullis(parseConfig(yaml, 'lockout.yaml', {}), { logger, listen: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 } });
  t.teardown(() => p.close(100));
  const base = p.gateway!.url();
  const keys = p.core.keys;
  const stats = () => p.authenticators().apiKey!.stats;

  await t.test('forgeries from four other addresses never refuse the holder', async (t) => {
    const holderKey = await keys.create({ subject: 'holder', role: 'basic' });
    const attackers = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5'].map((a) => client(t, a));
    const holder = client(t, '127.0.0.1');
    const before = stats().verifications;
    const f = flood(p, attackers, (c) => get(base, c, formatKey('pcl', holderKey.id, generateKey('pcl').secret)));
    // Let the key id come under attack before the holder's first request: its key is not cached or proven yet.
    while (stats().rateLimited < 20) await new Promise((r) => setTimeout(r, 5));
    const answers: Array<{ status: number; code?: string }> = [];
    for (let i = 0; i < 20; i++) answers.push(await get(base, holder, holderKey.key));
    f.stop();
    const fl = await f.done;
    const ran = stats().verifications - before;
    t.comment(`loopback flood: ${fl.sent} forgeries (${codesText(fl.codes)}); holder ${answers.length} requests; argon2 runs ${ran}; peak ${fl.peakActive} running, ${fl.peakQueued} waiting`);
    t.same(answers.filter((a) => a.status !== 200), [], 'every holder request was admitted');
    t.ok(fl.sent > answers.length, 'while the flood went on');
    t.ok((fl.codes.get('rate-limited') ?? 0) > fl.sent / 2, 'the forgers are refused 429');
    t.ok(ran <= attackers.length * MAX + 1, `argon2 runs at most ${MAX} per attacking address plus the holder's one (${ran})`);
    t.ok(fl.peakActive <= 2, 'never more than maxConcurrentVerifications at once');
    const seen = up.requests.filter((r) => r.requestLine.startsWith('GET /data '));
    t.equal(seen.length, answers.length, 'the upstream got exactly the holder\'s requests');
    t.same([...new Set(seen.map((r) => header(r, 'x-auth-key-id')))], [holderKey.id], 'all of them on the holder\'s key id');
    t.same((await get(base, attackers[0]!, holderKey.key)).code, undefined, 'a proven key is admitted from anywhere');
  });

  await t.test('forgeries from many forwarded addresses: one argon2 run each once the key id is attacked', async (t) => {
    const holderKey = await keys.create({ subject: 'holder2', role: 'basic' });
    const attackers = Array.from({ length: 40 }, (_, i) => client(t, '127.0.0.9', `10.66.${i >> 8}.${i & 255}`));
    const before = stats().verifications;
    const f = flood(p, attackers, (c) => get(base, c, formatKey('pcl', holderKey.id, generateKey('pcl').secret)));
    await new Promise((r) => setTimeout(r, 300));
    const holder = client(t, '127.0.0.9', '10.99.0.1');
    const first = await get(base, holder, holderKey.key);
    f.stop();
    const fl = await f.done;
    const ran = stats().verifications - before;
    t.comment(`forwarded flood from ${attackers.length} addresses: ${fl.sent} forgeries (${codesText(fl.codes)}); argon2 runs ${ran}; peak ${fl.peakActive} running, ${fl.peakQueued} waiting`);
    t.same(first, { status: 200 }, 'the holder, from an address of its own behind the proxy, is verified mid-flood');
    t.ok(ran <= attackers.length + MAX + 1, `argon2 runs at most one per attacking address past the limit (${ran})`);
    t.ok(fl.peakActive <= 2 && fl.peakQueued <= 64, 'within the verification queue');
    const from = up.requests.filter((r) => header(r, 'x-auth-key-id') === holderKey.id);
    t.equal(from.length, 1, 'only the holder\'s request reached the upstream');
    t.match(header(from[0]!, 'x-forwarded-for'), /10\.99\.0\.1/, 'from the holder\'s own address');
  });

  await t.test('forgeries for one key id from 100 addresses fill the queue for it only: a holder of another key is verified', async (t) => {
    // The forger holds a key of its own: its id is real, so each forgery costs an argon2 run
    // until the address has failed. The holder's key was never seen by this gateway (a
    // restart, a new key): it needs a run too, from the same queue.
    const forgersKey = await keys.create({ subject: 'mallory', role: 'basic' });
    const holderKey = await keys.create({ subject: 'holder3', role: 'basic' });
    const attackers = Array.from({ length: 100 }, (_, i) => client(t, '127.0.0.9', `10.77.${i >> 8}.${i & 255}`));
    const before = { verifications: stats().verifications, overloaded: stats().overloaded };
    const f = flood(p, attackers, (c) => get(base, c, formatKey('pcl', forgersKey.id, generateKey('pcl').secret)), 1);
    const t0 = performance.now();
    while (stats().overloaded - before.overloaded < 20) await new Promise((r) => setTimeout(r, 5));
    const t1 = performance.now();
    const holder = client(t, '127.0.0.9', '10.99.0.2');
    const answers: Array<{ status: number; code?: string }> = [];
    for (let i = 0; i < 5; i++) answers.push(await get(base, holder, holderKey.key));
    const t2 = performance.now();
    f.stop();
    const fl = await f.done;
    t.comment(`timing: ${(t1 - t0).toFixed(0)} ms to overload, holder ${(t2 - t1).toFixed(0)} ms, drain ${(performance.now() - t2).toFixed(0)} ms`);
    const ran = stats().verifications - before.verifications;
    t.comment(`one key id, ${attackers.length} addresses: ${fl.sent} forgeries (${codesText(fl.codes)}); argon2 runs ${ran}; peak ${fl.peakActive} running, ${fl.peakQueued} waiting`);
    t.ok((fl.codes.get('store-unavailable') ?? 0) > 0, 'the forgers filled their share of the queue (503)');
    t.same(answers, Array(5).fill({ status: 200 }), 'every request of the holder of another key was admitted');
    t.ok(fl.peakActive <= 2 && fl.peakQueued <= 64, 'within maxConcurrentVerifications and the verification queue');
    t.equal(up.requests.filter((r) => header(r, 'x-auth-key-id') === forgersKey.id).length, 0, 'no forgery reached the upstream');
    t.equal(up.requests.filter((r) => header(r, 'x-auth-key-id') === holderKey.id).length, 5, "the upstream got the holder's requests");
  });

  await t.test('a burst of forgeries for the holder\'s own key id, from fresh addresses, does not refuse the holder', async (t) => {
    const holderKey = await keys.create({ subject: 'holder5', role: 'basic' });
    const forgers = Array.from({ length: 40 }, (_, i) => client(t, '127.0.0.9', `10.55.0.${i}`));
    const burst = forgers.map((c) => get(base, c, formatKey('pcl', holderKey.id, generateKey('pcl').secret)));
    // The holder's key has never been verified here: it queues behind the burst, for its own key id.
    const answer = await get(base, client(t, '127.0.0.9', '10.99.0.5'), holderKey.key);
    const codes = (await Promise.all(burst)).map((r) => r.code ?? String(r.status));
    t.comment(`burst of ${forgers.length}: ${[...new Set(codes)].map((c) => `${codes.filter((x) => x === c).length} ${c}`).join(', ')}`);
    t.same(answer, { status: 200 }, 'the holder is verified');
    t.equal(up.requests.filter((r) => header(r, 'x-auth-key-id') === holderKey.id).length, 1, 'only the holder reached the upstream');
  });

  await t.test('forged refresh tokens from other addresses never refuse the holder\'s refresh', async (t) => {
    const k = await keys.create({ subject: 'spa', role: 'basic', refreshable: true });
    const attackers = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5'].map((a) => client(t, a));
    const seen: Array<{ status: number; code?: string }> = [];
    for (let round = 0; round < 3; round++) {
      for (const a of attackers) for (let i = 0; i < MAX + 2; i++) seen.push(await refresh(base, a, generateRefreshToken('pcl', k.id).key));
    }
    t.ok(seen.filter((s) => s.code === 'rate-limited').length >= attackers.length * 2, 'each forger ends up refused 429');
    t.equal(seen.filter((s) => s.status === 200).length, 0, 'no forgery mints a key');
    const holder = client(t, '127.0.0.1');
    t.same(await refresh(base, holder, k.refreshToken!), { status: 200 }, 'the holder refreshes');
  });

  await t.test('forged refresh tokens from many addresses run argon2 in the bounded verification queue', async (t) => {
    const k = await keys.create({ subject: 'spa2', role: 'basic', refreshable: true });
    const other = await keys.create({ subject: 'holder4', role: 'basic' });
    const attackers = Array.from({ length: 200 }, (_, i) => client(t, '127.0.0.9', `10.88.${i >> 8}.${i & 255}`));
    const before = stats().verifications;
    const f = flood(p, attackers, (c) => refresh(base, c, generateRefreshToken('pcl', k.id).key), 1);
    await new Promise((r) => setTimeout(r, 300));
    const holder = client(t, '127.0.0.9', '10.99.0.3');
    const answer = await get(base, holder, other.key);
    f.stop();
    const fl = await f.done;
    const ran = stats().verifications - before;
    t.comment(`refresh forgeries from ${attackers.length} addresses: ${fl.sent} (${codesText(fl.codes)}); argon2 runs ${ran}; peak ${fl.peakActive} running, ${fl.peakQueued} waiting`);
    t.ok(ran > 0 && (fl.codes.get('store-unavailable') ?? 0) > 0, `the forgeries' argon2 runs went through the verification queue (${ran} runs; the rest refused 503)`);
    t.ok(fl.peakActive <= 2 && fl.peakQueued <= 64, 'never more than maxConcurrentVerifications at once, within the queue');
    t.same(answer, { status: 200 }, 'a holder of another key, not yet verified, is admitted mid-flood');
    t.equal((fl.codes.get('200') ?? 0), 0, 'no forgery mints a key');
  });
}
