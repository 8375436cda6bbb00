import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { request } from 'undici';
import { startRawUpstream, type RawUpstream } from '../hardening/raw-upstream.js';
import { REDIS_URL, redisPrefix, serviceSkip, tempDatabase } from '../helpers/services.js';
import { call, cli, cliJson, fleetConfig, sleep, startFleet, stopFleet, type Instance } from './helpers.js';

// Usage credits and per-key rate limits on two gateway processes sharing one PostgreSQL
// database (and Redis, which shares the rate limits): the credits are spent exactly across
// the fleet, counted at the upstream, and the CLI sets, shows and refills them.

const skip = (await serviceSkip('postgres')) || (await serviceSkip('redis'));
if (skip) {
  t.plan(0, `skipping: ${skip}`);
} else {
  const db = await tempDatabase();
  t.teardown(() => db.drop());
  const up = await startRawUpstream();
  t.teardown(() => up.close());
  const prefix = redisPrefix();
  t.teardown(() => prefix.clean());
  const dir = await mkdtemp(join(tmpdir(), 'pcl-quotas-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const yaml = fleetConfig({ store: db.url, upstream: up.url, redis: REDIS_URL, keyPrefix: prefix.prefix });
  const cfg = join(dir, 'gateway.config.yaml');
  await writeFile(cfg, yaml);
  const fleet = await startFleet(2, yaml);
  t.teardown(() => stopFleet(fleet));
  await Promise.all(fleet.map(ready));

  const bearer = (v: string) => ({ authorization: `Bearer ${v}` });
  const create = async (...args: string[]) => cliJson<{ id: string; key: string; remaining: number | null; rateLimit: string | null }>(await cli(cfg, 'keys', 'create', '--role', 'basic', '--json', ...args));
  const remaining = async (subject: string) => cliJson<Array<{ remaining: number | null; rateLimit: string | null }>>(await cli(cfg, 'keys', 'list', '--subject', subject, '--json'))[0];
  /** `n` requests at once, alternating between the instances. */
  const burst = (key: string, n: number) => Promise.all(Array.from({ length: n }, (_, i) => call(fleet[i % 2]!, `/b${i}`, bearer(key))));

  await t.test('two instances spend one lineage credits exactly, then 429 quota-exhausted', async (t) => {
    const k = await create('--subject', 'fleet-uses', '--uses', '10');
    t.equal(k.remaining, 10, 'keys create --uses 10');
    const answers = await burst(k.key, 30);
    t.equal(answers.filter((a) => a.status === 200).length, 10, '10 admitted across both instances');
    t.equal(answers.filter((a) => a.code === 'quota-exhausted').length, 20, 'the other 20 refused quota-exhausted');
    t.equal(upstreamFor(up, k.id), 10, 'the upstream saw exactly 10');
    t.equal((await remaining('fleet-uses'))?.remaining, 0, 'keys list --json: remaining 0');
    const refill = cliJson<{ remaining: number }>(await cli(cfg, 'keys', 'update', k.id, '--uses', '4', '--json'));
    t.equal(refill.remaining, 4, 'keys update --uses 4 refills');
    const again = await burst(k.key, 12);
    t.equal(again.filter((a) => a.status === 200).length, 4, 'exactly 4 more');
    t.equal(upstreamFor(up, k.id), 14, 'and the upstream saw them');
  });

  await t.test('credits added to a key cached on both instances reach them both', async (t) => {
    const k = await create('--subject', 'fleet-later');
    for (const inst of fleet) t.equal((await call(inst, '/warm', bearer(k.key))).status, 200, `${inst.name}: cached, unlimited`);
    cliJson(await cli(cfg, 'keys', 'update', k.id, '--uses', '3', '--json'));
    // A key's change reaches every instance's cache within 1 s.
    await sleep(1_500);
    const before = upstreamFor(up, k.id);
    const answers = await burst(k.key, 10);
    t.equal(answers.filter((a) => a.status === 200).length, 3, 'exactly 3 admitted across the fleet');
    t.equal(upstreamFor(up, k.id) - before, 3, 'and forwarded');
    t.equal((await remaining('fleet-later'))?.remaining, 0);
  });

  await t.test('--rate-limit N/D is shared by the fleet and named in the headers', async (t) => {
    const k = await create('--subject', 'fleet-rl', '--rate-limit', '3/1h');
    t.equal(k.rateLimit, '3/1h');
    t.equal((await remaining('fleet-rl'))?.rateLimit, '3/1h', 'keys list --json shows it');
    const r = await request(`${fleet[0]!.gw.url}/h`, { headers: bearer(k.key), dispatcher: fleet[0]!.agent });
    await r.body.dump();
    t.equal(r.headers['ratelimit-policy'], '"key";q=3;w=3600');
    const answers = await burst(k.key, 8);
    t.equal(answers.filter((a) => a.status === 200).length, 2, 'two more across both instances');
    t.equal(answers.filter((a) => a.code === 'rate-limited').length, 6);
    t.equal(upstreamFor(up, k.id), 3);
    cliJson(await cli(cfg, 'keys', 'update', k.id, '--rate-limit', 'none', '--json'));
    t.equal((await remaining('fleet-rl'))?.rateLimit, null, '--rate-limit none removes it');
  });

  await t.test('bad --rate-limit and --uses are refused with a clear message', async (t) => {
    for (const args of [['--rate-limit', '10/fortnight'], ['--rate-limit', '0/1m'], ['--uses', '-3']]) {
      const r = await cli(cfg, 'keys', 'create', '--role', 'basic', '--subject', 'bad', ...args);
      t.not(r.code, 0, `${args.join(' ')}: exits non-zero`);
      t.match(r.err, /invalid-argument/, `${args.join(' ')}: ${r.err.trim()}`);
    }
  });
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

function upstreamFor(up: RawUpstream, keyId: string): number {
  return up.requests.filter((r) => r.headerLines.some((l) => l.toLowerCase() === `x-auth-key-id: ${keyId}`.toLowerCase())).length;
}
