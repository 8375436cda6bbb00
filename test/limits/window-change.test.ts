import t from 'tap';
import type { Test } from 'tap';
import { LocalRateLimiter } from '../../src/limits/local.js';
import { compilePolicy, type Hit } from '../../src/limits/policy.js';
import { RedisRateLimiter } from '../../src/limits/redis.js';
import type { LimitVerdict, RateLimiter } from '../../src/limits/types.js';
import { redisPrefix, REDIS_URL, serviceSkip } from '../helpers/services.js';

// A policy whose window changes (a reload, or `keys update --rate-limit` on a key's own
// limit, which is always named "key") must not read the slots counted under the old window
// as slots of the new one: a shorter old window's slot numbers looked like future slots to
// the longer one, were never dropped, and refused the bucket for good (Retry-After ~7e9 s).

const clock = { now: 1_796_000_000_000 };
const hit = (limit: number, windowMs: number): Hit[] => [{ policy: compilePolicy({ name: 'key', limit, window: windowMs, by: 'credential' }), bucket: 'lineage-1' }];

async function verdict(l: RateLimiter, hits: Hit[]): Promise<LimitVerdict> {
  return l.check(hits);
}

async function suite(t: Test, name: string, make: () => Promise<RateLimiter>): Promise<void> {
  await t.test(name, async (t) => {
    for (const [from, to] of [[1_000, 5_000], [5_000, 1_000], [60_000, 3_600_000]] as const) {
      const l = await make();
      const before = hit(2, from);
      t.equal((await verdict(l, before)).admitted, true);
      t.equal((await verdict(l, before)).admitted, true);
      t.equal((await verdict(l, before)).admitted, false, `${from} ms window: the third is refused`);
      clock.now += 10;
      const after = hit(2, to);
      t.equal((await verdict(l, after)).admitted, true, `${from} → ${to} ms: a fresh bucket`);
      t.equal((await verdict(l, after)).admitted, true);
      const refused = await verdict(l, after);
      t.equal(refused.admitted, false);
      const wait = refused.retryAfterMs;
      // The rule counts the oldest slot whole: a wait of up to one window and one slot.
      t.ok(wait > 0 && wait <= to + to / 10, `${from} → ${to} ms: Retry-After within the new window and a slot (${wait} ms)`);
      clock.now += wait;
      t.equal((await verdict(l, after)).admitted, true, `${from} → ${to} ms: admitted after that wait`);
      clock.now += 3_600_000 * 2;
    }
  });
}

await suite(t, 'in process', async () => new LocalRateLimiter(() => clock.now));
const skip = await serviceSkip('redis');
if (skip) t.comment(`Redis: skipped (${skip})`);
else {
  const keys = redisPrefix();
  t.teardown(() => keys.clean());
  let n = 0;
  await suite(t, 'Redis', async () => {
    const l = new RedisRateLimiter({ url: REDIS_URL, prefix: `${keys.prefix}wc${n++}:`, onError: 'deny', fallback: new LocalRateLimiter(), now: () => clock.now });
    t.teardown(() => l.close());
    await l.ready();
    return l;
  });
}
