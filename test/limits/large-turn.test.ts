import t from 'tap';
import { LocalRateLimiter } from '../../src/limits/local.js';
import { compilePolicy, type Hit } from '../../src/limits/policy.js';
import { RedisRateLimiter } from '../../src/limits/redis.js';
import { RedisRevocationStore } from '../../src/revocation/redis.js';
import { recordingLogger, sleep } from '../revocation/helpers.js';
import { redisPrefix, REDIS_URL, serviceSkip } from '../helpers/services.js';

// One event-loop turn can hold very many limited requests: libuv reads up to 32 × 64 KiB
// per socket and poll, and Node parses every pipelined request of a read at once, so a few
// connections put tens of thousands of requests into one turn. On distinct buckets (distinct
// credentials, or `by: ip` behind a trusted proxy, where the client picks its
// X-Forwarded-For) each adds its own keys and arguments to the turn's script call. That call
// must still be sent (and the revocation checks sharing its write), not end the process with
// a RangeError thrown from the turn's callback.

const skip = await serviceSkip('redis');
if (skip) t.plan(0, `skipping: ${skip}`);
else {
  const keys = redisPrefix();
  t.teardown(() => keys.clean());

  t.test('a turn of 50 000 gated limit checks on distinct buckets and a revocation check is answered', async (t) => {
    const store = new RedisRevocationStore({ url: REDIS_URL, keyPrefix: keys.prefix, logger: recordingLogger(), expiryGraceMs: 0, timeout: 10_000 });
    t.teardown(() => store.close());
    t.ok(await store.waitReady(3_000), 'revocation store ready');
    const limiter = new RedisRateLimiter({ url: REDIS_URL, prefix: `${keys.prefix}rl:`, shared: store.turn, onError: 'deny', fallback: new LocalRateLimiter(), timeoutMs: 10_000 });
    t.teardown(() => limiter.close());
    await store.revoke('key:gone', Date.now() + 60_000);

    // Generous timeouts: a script of this size takes a while under coverage, and the MGET
    // sharing its write is answered after it. Buckets expire a second after the test.
    const policy = compilePolicy({ name: 'big', limit: 5, window: 1_000, by: 'credential' });
    const issuedAt = Date.now();
    const crashes: unknown[] = [];
    const onCrash = (err: unknown) => crashes.push(err);
    process.prependListener('uncaughtException', onCrash);
    t.teardown(() => process.off('uncaughtException', onCrash));

    const n = 50_000;
    const checks: Promise<unknown>[] = [];
    for (let i = 0; i < n; i++) {
      const hits: Hit[] = [{ policy, bucket: `key:k${i}` }];
      const gate = store.gate({ revocationId: i === 7 ? 'key:gone' : `key:k${i}`, subject: 'keys:someone', issuedAt });
      checks.push(Promise.resolve(limiter.check(hits, gate)));
    }
    const mget = store.isRevoked({ revocationId: 'key:gone', subject: 'keys:someone', issuedAt });
    const all = Promise.all([Promise.all(checks), mget]);
    all.catch(() => undefined);
    const out = await Promise.race([all, sleep(20_000).then(() => 'unanswered' as const)]);
    t.same(crashes.map(String), [], 'nothing thrown out of the turn');
    t.not(out, 'unanswered', 'every check of the turn was answered');
    if (out === 'unanswered') return;
    const [verdicts, revoked] = out as [Array<{ admitted: boolean; revoked?: boolean }>, boolean];
    t.equal(revoked, true, 'the revocation check sharing the turn answered');
    t.equal(verdicts.filter((v) => v.admitted).length, n - 1, 'every other request admitted');
    t.equal(verdicts[7]!.revoked, true, 'the revoked one answered revoked by the script');
  });
}
