import t from 'tap';
import fc from 'fast-check';
import { Redis } from 'ioredis';
import { LocalRateLimiter } from '../../src/limits/local.js';
import { compilePolicy, type Hit } from '../../src/limits/policy.js';
import { RedisRateLimiter } from '../../src/limits/redis.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { rawGet } from '../helpers/raw.js';
import { redisPrefix, REDIS_URL, serviceSkip } from '../helpers/services.js';
import { startRawUpstream } from '../hardening/raw-upstream.js';

// Rate limits shared by a fleet through real Redis: the script decides exactly as the pure
// rule does, three gateways together admit exactly `limit`, and an outage follows onError.

const skip = await serviceSkip('redis');
if (skip) t.plan(0, `skipping: ${skip}`);
else {
  const keys = redisPrefix();
  t.teardown(() => keys.clean());

  t.test('the Redis script decides exactly as the in-process rule, request by request', async (t) => {
    const clock = { now: 0 };
    const redis = new RedisRateLimiter({ url: REDIS_URL, prefix: `${keys.prefix}eq:`, onError: 'deny', fallback: new LocalRateLimiter(), now: () => clock.now });
    t.teardown(() => redis.close());
    t.ok(await redis.ready(), 'connected');
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 8 }),
        fc.integer({ min: 1_000, max: 60_000 }),
        fc.array(fc.tuple(fc.integer({ min: 0, max: 8_000 }), fc.constantFrom('a', 'b')), { minLength: 1, maxLength: 60 }),
        async (limit, windowMs, steps) => {
          run++;
          const p = compilePolicy({ name: `p${run}`, limit, window: windowMs, by: 'credential' });
          const g = compilePolicy({ name: `g${run}`, limit: limit * 2, window: windowMs, by: 'global' });
          const local = new LocalRateLimiter(() => clock.now);
          clock.now = 1_700_000_000_000;
          for (const [gap, who] of steps) {
            clock.now += gap;
            const hits: Hit[] = [{ policy: p, bucket: who }, { policy: g, bucket: 'all' }];
            const want = local.check(hits);
            const got = await redis.check(hits);
            if (got.admitted !== want.admitted || got.remaining !== want.remaining || got.retryAfterMs !== want.retryAfterMs || got.policy.name !== want.policy.name) {
              t.fail(`diverged at ${clock.now}: redis ${JSON.stringify({ ...got, policy: got.policy.name })}, rule ${JSON.stringify({ ...want, policy: want.policy.name })}`);
              return false;
            }
          }
          return true;
        },
      ),
      { numRuns: 60 },
    );
    t.pass('60 random sequences agreed on every verdict');
  });

  t.test('a batch of one turn (many requests, shared buckets) is decided as the rule decides them one by one, group by group', async (t) => {
    const clock = { now: 0 };
    const redis = new RedisRateLimiter({ url: REDIS_URL, prefix: `${keys.prefix}batch:`, onError: 'deny', fallback: new LocalRateLimiter(), now: () => clock.now });
    t.teardown(() => redis.close());
    t.ok(await redis.ready(), 'connected');
    let run = 0;
    let batched = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1_000, max: 30_000 }),
        // Turns: a gap, then the requests issued together in that turn (who, and whether it also hits a second policy).
        fc.array(fc.tuple(fc.integer({ min: 0, max: 6_000 }), fc.array(fc.tuple(fc.constantFrom('a', 'b', 'c'), fc.boolean()), { minLength: 1, maxLength: 12 })), { minLength: 1, maxLength: 12 }),
        async (limit, windowMs, turns) => {
          run++;
          const p = compilePolicy({ name: `bp${run}`, limit, window: windowMs, by: 'credential' });
          const g = compilePolicy({ name: `bg${run}`, limit: limit + 2, window: windowMs * 2, by: 'global' });
          const local = new LocalRateLimiter(() => clock.now);
          clock.now = 1_700_000_000_000;
          for (const [gap, requests] of turns) {
            clock.now += gap;
            const hitsOf = requests.map(([who, both]): Hit[] => (both ? [{ policy: p, bucket: who }, { policy: g, bucket: 'all' }] : [{ policy: p, bucket: who }]));
            // The requests of a turn arrived together: the script takes those asking the same
            // (same buckets) as one group, groups in the order they first appear. The rule,
            // one by one in that order, must give every verdict.
            const shapes = [...new Set(requests.map(([who, both]) => `${who}${both}`))];
            const order = requests.map((_, i) => i).sort((x, y) => shapes.indexOf(requests[x]!.join('')) - shapes.indexOf(requests[y]!.join('')) || x - y);
            const want: ReturnType<LocalRateLimiter['check']>[] = [];
            for (const i of order) want[i] = local.check(hitsOf[i]!);
            const got = await Promise.all(hitsOf.map((h) => redis.check(h)));
            if (requests.length > 1) batched++;
            for (let i = 0; i < got.length; i++) {
              const a = got[i]!;
              const b = want[i]!;
              if (a.admitted !== b.admitted || a.remaining !== b.remaining || a.retryAfterMs !== b.retryAfterMs || a.policy.name !== b.policy.name) {
                t.fail(`request ${i} of a turn of ${requests.length} diverged at ${clock.now}: redis ${JSON.stringify({ ...a, policy: a.policy.name })}, rule ${JSON.stringify({ ...b, policy: b.policy.name })}`);
                return false;
              }
            }
          }
          return true;
        },
      ),
      { numRuns: 60 },
    );
    t.ok(batched > 100, `turns of several requests were tried (${batched})`);
  });

  t.test("a bucket's key lives as long as its newest slot can count, and no longer", async (t) => {
    const clock = { now: 1_700_000_000_000 };
    const prefix = `${keys.prefix}ttl:`;
    const redis = new RedisRateLimiter({ url: REDIS_URL, prefix, onError: 'deny', fallback: new LocalRateLimiter(), now: () => clock.now });
    const probe = new Redis(REDIS_URL);
    t.teardown(async () => { await redis.close(); await probe.quit(); });
    t.ok(await redis.ready(), 'connected');
    const p = compilePolicy({ name: 'ttl', limit: 100, window: 60_000, by: 'credential' });
    const key = `${prefix}ttl:60000:a`;
    const life = 60_000 + 6_000;
    await redis.check([{ policy: p, bucket: 'a' }]);
    const first = await probe.pttl(key);
    t.ok(first > life - 2_000 && first <= life, `a new slot sets the life to window + slot (${first} ms)`);
    await probe.pexpire(key, 30_000);
    clock.now += 1_000;
    await Promise.all([redis.check([{ policy: p, bucket: 'a' }]), redis.check([{ policy: p, bucket: 'a' }])]);
    const same = await probe.pttl(key);
    t.ok(same > 0 && same <= 30_000, `a later request in the same slot keeps the life its slot was given (${same} ms)`);
    clock.now += 6_000;
    await redis.check([{ policy: p, bucket: 'a' }]);
    const next = await probe.pttl(key);
    t.ok(next > life - 2_000 && next <= life, `a request in a new slot renews it (${next} ms)`);
    t.same(await probe.hvals(key).then((v) => v.map(Number).sort()), [1, 3], 'the counts are in their slots');
  });

  const raw = await startRawUpstream();
  t.teardown(() => raw.close());
  const yaml = (policies: string) => `
upstreams: { api: { url: "${raw.url}" } }
roles: [basic]
log: { level: silent }
rateLimits:
  policies:
${policies}
routes:
  - match: { path: "/limited/**" }
    minRole: basic
    rateLimit: [per-key]
    upstream: api
  - match: { path: "/**" }
    minRole: basic
    upstream: api
`;
  const table = { 'key-a': { subject: 'alice', role: 'basic', keyId: 'ka' }, 'key-b': { subject: 'bob', role: 'basic', keyId: 'kb' } };

  async function fleet(n: number, prefix: string, policies: string, onError: 'allow' | 'deny' = 'deny', url = REDIS_URL): Promise<TestGateway[]> {
    const out: TestGateway[] = [];
    for (let i = 0; i < n; i++) {
      const limiter = new RedisRateLimiter({ url, prefix, onError, fallback: new LocalRateLimiter(), timeoutMs: 300 });
      if (url === REDIS_URL) await limiter.ready();
      const g = await startTestGateway(yaml(policies), { table, services: { limiter } });
      t.teardown(async () => { await g.close(); await limiter.close(); });
      out.push(g);
    }
    return out;
  }
  const portOf = (g: TestGateway) => Number(new URL(g.url).port);

  t.test('three gateways sharing Redis together admit exactly the limit', async (t) => {
    const gws = await fleet(3, `${keys.prefix}fleet:`, '    - { name: per-key, limit: 25, window: 1m, by: credential }');
    const before = raw.requests.length;
    // 90 concurrent requests for one key, spread over the three gateways.
    const answers = await Promise.all(Array.from({ length: 90 }, (_, i) => rawGet(portOf(gws[i % 3]!), `/limited/x?i=${i}`, ['X-Api-Key: key-a'])));
    const ok = answers.filter((a) => a.status === 200);
    const limited = answers.filter((a) => a.status === 429);
    t.equal(ok.length, 25, 'exactly the limit admitted, fleet-wide');
    t.equal(limited.length, 65, 'the rest refused 429');
    await new Promise((r) => setTimeout(r, 100));
    t.equal(raw.requests.length - before, 25, 'the upstream saw exactly the admitted requests');
    const refusal = limited[0]!;
    t.equal(JSON.parse(refusal.body).code, 'rate-limited');
    t.match(refusal.headers['retry-after'], /^[1-9]\d*$/);
    t.equal(refusal.headers['ratelimit-policy'], '"per-key";q=25;w=60');
    t.match(refusal.headers['ratelimit'], /^"per-key";r=0;t=[1-9]\d*$/);
    const remaining = ok.map((a) => Number(/r=(\d+)/.exec(a.headers['ratelimit'] ?? '')?.[1])).sort((a, b) => a - b);
    t.same(remaining, Array.from({ length: 25 }, (_, i) => i), 'every admitted answer carries its own remaining count, 24 down to 0');
    const other = await rawGet(portOf(gws[1]!), '/limited/x', ['X-Api-Key: key-b']);
    t.equal(other.status, 200, 'another credential has its own bucket');
    const unlimited = await rawGet(portOf(gws[2]!), '/free', ['X-Api-Key: key-a']);
    t.equal(unlimited.status, 200, 'a route without the policy is not limited');
    t.equal(unlimited.headers['ratelimit'], undefined, 'and carries no RateLimit headers');
    const counted = gws.reduce((n, g) => n + g.records.filter((r) => r.code === 'rate-limited' && r.ratePolicy === 'per-key').length, 0);
    t.equal(counted, 65, 'every refusal recorded with its policy (metrics, logs)');
  });

  t.test('Redis unreachable: onError allow enforces per instance, deny refuses 503', async (t) => {
    const dead = 'redis://127.0.0.1:1';
    const [allow] = await fleet(1, `${keys.prefix}allow:`, '    - { name: per-key, limit: 3, window: 1m }', 'allow', dead);
    const statuses = [];
    for (let i = 0; i < 5; i++) statuses.push((await rawGet(portOf(allow!), '/limited/x', ['X-Api-Key: key-a'])).status);
    t.same(statuses, [200, 200, 200, 429, 429], 'allow: this instance enforces the limit alone');
    const [deny] = await fleet(1, `${keys.prefix}deny:`, '    - { name: per-key, limit: 3, window: 1m }', 'deny', dead);
    const before = raw.requests.length;
    const r = await rawGet(portOf(deny!), '/limited/x', ['X-Api-Key: key-a']);
    t.equal(r.status, 503);
    t.equal(JSON.parse(r.body).code, 'rate-limit-unavailable');
    t.equal(r.headers['retry-after'], '1');
    t.equal(raw.requests.length, before, 'nothing reached the upstream');
    t.equal((await rawGet(portOf(deny!), '/free', ['X-Api-Key: key-a'])).status, 200, 'routes without limits are unaffected');
  });
}
