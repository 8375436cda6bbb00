import t from 'tap';
import fc from 'fast-check';
import { count, peek, slotMs, type Slots } from '../../src/limits/window.js';
import { LocalRateLimiter } from '../../src/limits/local.js';
import { compilePolicy } from '../../src/limits/policy.js';

// The sliding-window rule: whatever the arrival times, no interval of one window's length
// — wherever it starts, across any slot or "window" boundary — contains more admitted
// requests than the limit; a refused request is told exactly when one will be admitted.

const arrivals = fc.record({
  limit: fc.integer({ min: 1, max: 20 }),
  windowMs: fc.integer({ min: 1_000, max: 120_000 }),
  // Gaps between requests, bursts (0) included; up to ~3 windows of traffic.
  gaps: fc.array(fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 50 }), fc.integer({ min: 0, max: 20_000 })), { minLength: 1, maxLength: 300 }),
  start: fc.integer({ min: 0, max: 10_000_000_000 }),
});

function run(limit: number, windowMs: number, gaps: number[], start: number) {
  const slots: Slots = new Map();
  const admitted: number[] = [];
  const verdicts: Array<{ at: number; admitted: boolean; retryAfterMs: number; remaining: number }> = [];
  let now = start;
  for (const g of gaps) {
    now += g;
    const v = peek(slots, now, limit, windowMs);
    if (v.admitted) {
      count(slots, now, windowMs);
      admitted.push(now);
    }
    verdicts.push({ at: now, ...v });
  }
  return { admitted, verdicts, slots };
}

t.test('no interval of one window admits more than the limit', async (t) => {
  fc.assert(
    fc.property(arrivals, ({ limit, windowMs, gaps, start }) => {
      const { admitted } = run(limit, windowMs, gaps, start);
      // The densest intervals start at an admitted request: check every one.
      for (let i = 0; i < admitted.length; i++) {
        let j = i;
        while (j < admitted.length && admitted[j]! < admitted[i]! + windowMs) j++;
        if (j - i > limit) return false;
      }
      return true;
    }),
    { numRuns: 2_000 },
  );
  t.pass('held for 2 000 random arrival patterns');
});

t.test('a fresh bucket admits a burst of exactly the limit', async (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 50 }), fc.integer({ min: 1_000, max: 3_600_000 }), fc.integer({ min: 0, max: 1e12 }), (limit, windowMs, at) => {
      const { admitted } = run(limit, windowMs, [0, ...Array(limit * 2).fill(0)], at);
      return admitted.length === limit;
    }),
  );
  t.pass();
});

t.test('Retry-After is exact: refused until then, admitted from then on', async (t) => {
  fc.assert(
    fc.property(arrivals, ({ limit, windowMs, gaps, start }) => {
      const { verdicts, slots } = run(limit, windowMs, gaps, start);
      const last = verdicts.at(-1)!;
      if (last.admitted) return last.remaining >= 0 && last.retryAfterMs === 0;
      const snapshot = (): Slots => new Map(slots);
      const before = peek(snapshot(), last.at + last.retryAfterMs - 1, limit, windowMs);
      const after = peek(snapshot(), last.at + last.retryAfterMs, limit, windowMs);
      return after.admitted && (last.retryAfterMs === 1 || !before.admitted);
    }),
    { numRuns: 2_000 },
  );
  t.pass();
});

t.test('a steady rate at the limit is admitted in full; memory stays one window of slots', async (t) => {
  const limit = 60;
  const windowMs = 60_000;
  const { admitted, slots } = run(limit, windowMs, Array(600).fill(1_000), 0);
  t.ok(admitted.length >= 540, `one per second for ten minutes: ${admitted.length} of 600 admitted (the rule is conservative by at most one slot)`);
  t.ok(slots.size <= windowMs / slotMs(windowMs) + 1, `${slots.size} slots kept`);
});

t.test('several policies: admitted only when every bucket has room, counted in each', async (t) => {
  const now = { t: 1_000_000 };
  const lim = new LocalRateLimiter(() => now.t);
  const tight = compilePolicy({ name: 'tight', limit: 2, window: 10_000, by: 'credential' });
  const loose = compilePolicy({ name: 'loose', limit: 5, window: 10_000, by: 'global' });
  const hits = [{ policy: tight, bucket: 'a' }, { policy: loose, bucket: 'g' }];
  const first = lim.check(hits);
  t.match(first, { admitted: true, policy: { name: 'tight' }, remaining: 1 }, 'the tightest bucket is reported');
  t.match(lim.check(hits), { admitted: true, remaining: 0 });
  const refused = lim.check(hits);
  t.match(refused, { admitted: false, policy: { name: 'tight' }, remaining: 0 });
  t.ok(refused.retryAfterMs > 0 && refused.retryAfterMs <= 11_000);
  // The refusal was not counted in the loose bucket: other credentials still get its 3 left.
  const other = [{ policy: tight, bucket: 'b' }, { policy: loose, bucket: 'g' }];
  t.match(lim.check(other), { admitted: true });
  t.match(lim.check(other), { admitted: true, policy: { name: 'tight' }, remaining: 0 });
  t.match(lim.check([{ policy: tight, bucket: 'c' }, { policy: loose, bucket: 'g' }]), { admitted: true, policy: { name: 'loose' }, remaining: 0 });
  t.match(lim.check([{ policy: tight, bucket: 'd' }, { policy: loose, bucket: 'g' }]), { admitted: false, policy: { name: 'loose' } });
  now.t += 11_000;
  t.match(lim.check(hits), { admitted: true }, 'a window later, admitted again');
});
