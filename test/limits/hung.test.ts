import t from 'tap';
import { LocalRateLimiter } from '../../src/limits/local.js';
import { compilePolicy } from '../../src/limits/policy.js';
import { RedisRateLimiter } from '../../src/limits/redis.js';
import { startRelay } from '../helpers/relay.js';
import { redisPrefix, REDIS_URL, serviceSkip } from '../helpers/services.js';

// A Redis that stops answering (a partition: the connection stays open, nothing comes
// back): every limit check is bounded by the limiter's timeout, counted from when its
// script call was sent, and onError decides; answers resume with the connection.

const TIMEOUT = 300;
const skip = await serviceSkip('redis');
if (skip) t.plan(0, `skipping: ${skip}`);
else {
  const keys = redisPrefix();
  t.teardown(() => keys.clean());
  const target = new URL(REDIS_URL);
  const relay = await startRelay({ host: target.hostname, port: Number(target.port || 6379) });
  t.teardown(() => relay.close());
  const url = `redis://${relay.address}`;
  const policy = compilePolicy({ name: 'hung', limit: 5, window: 60_000, by: 'credential' });
  const hits = [{ policy, bucket: 'a' }];

  for (const onError of ['deny', 'allow'] as const) {
    t.test(`onError ${onError}: a hung Redis is given up after the timeout`, async (t) => {
      const limiter = new RedisRateLimiter({ url, prefix: `${keys.prefix}${onError}:`, onError, fallback: new LocalRateLimiter(), timeoutMs: TIMEOUT });
      t.teardown(() => limiter.close());
      t.ok(await limiter.ready(), 'connected through the relay');
      t.match(await limiter.check(hits), { admitted: true, remaining: 4 }, 'answering before');
      relay.pause();
      const t0 = performance.now();
      const first = Promise.allSettled([limiter.check(hits), limiter.check(hits)]);
      // A check sent while the first call hangs waits its own timeout, not the first's.
      const later = new Promise((r) => setTimeout(r, TIMEOUT / 2)).then(async () => {
        const t1 = performance.now();
        const [r] = await Promise.allSettled([limiter.check(hits)]);
        return { r, ms: performance.now() - t1 };
      });
      const settled = await first;
      const ms = performance.now() - t0;
      const l = await later;
      t.ok(ms >= TIMEOUT - 20 && ms < TIMEOUT + 150, `the hung turn gave up after ${ms.toFixed(0)} ms (timeout ${TIMEOUT} ms)`);
      t.ok(l.ms >= TIMEOUT - 20 && l.ms < TIMEOUT + 150, `a later turn gave up after its own timeout (${l.ms.toFixed(0)} ms)`);
      for (const r of [...settled, l.r]) {
        if (onError === 'deny') t.match(r, { status: 'rejected', reason: { code: 'rate-limit-unavailable' } }, 'deny: 503 rate-limit-unavailable');
        else t.match(r, { status: 'fulfilled', value: { admitted: true } }, 'allow: counted in this process meanwhile');
      }
      await relay.restore();
      let back = false;
      for (let i = 0; i < 100 && !back; i++) {
        back = await Promise.resolve(limiter.check(hits)).then((v) => v.admitted && v.remaining < 4, () => false);
        if (!back) await new Promise((r) => setTimeout(r, 20));
      }
      t.ok(back, 'answers again once Redis does');
    });
  }
}
