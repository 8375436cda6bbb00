import t from 'tap';
import { LocalRateLimiter } from '../../src/limits/local.js';
import { compilePolicy, type Hit } from '../../src/limits/policy.js';
import { answerLimits, WorkerRateLimiter, type PrimaryLink } from '../../src/limits/shared.js';
import { GatewayError } from '../../src/http/problem.js';

// Workers without Redis share the primary's buckets: what two workers admit together is
// exactly what one in-process limiter admits.
function link(primary: LocalRateLimiter, calls: { n: number }): PrimaryLink {
  const answer = answerLimits(primary);
  return {
    call: async <T>(op: string, arg: unknown) => {
      calls.n++;
      if (op !== 'limit') throw new Error(op);
      return structuredClone(answer(structuredClone(arg))) as T;
    },
  };
}

const perKey = compilePolicy({ name: 'per-key', limit: 5, window: 60_000, by: 'credential' });
const global = compilePolicy({ name: 'global', limit: 8, window: 60_000, by: 'global' });
const hit = (bucket: string): Hit[] => [
  { policy: perKey, bucket },
  { policy: global, bucket: 'global' },
];

t.test('two workers together admit exactly the limit, one message per event-loop turn each', async (t) => {
  const now = 1_000_000;
  const primary = new LocalRateLimiter(() => now);
  const calls = { n: 0 };
  const w1 = new WorkerRateLimiter(link(primary, calls));
  const w2 = new WorkerRateLimiter(link(primary, calls));
  const verdicts = await Promise.all([...Array(4)].flatMap(() => [w1.check(hit('key:a')), w2.check(hit('key:a'))]));
  t.equal(calls.n, 2, 'eight checks in one turn: one message per worker');
  t.equal(verdicts.filter((v) => v.admitted).length, 5, 'key a: five admitted of eight');
  const refused = verdicts.find((v) => !v.admitted)!;
  t.equal(refused.policy, perKey, 'the refusal names the worker’s own compiled policy');
  t.ok(refused.retryAfterMs > 0);
  const more = await Promise.all([w1.check(hit('key:b')), w2.check(hit('key:b')), w1.check(hit('key:b')), w2.check(hit('key:b'))]);
  t.same(
    more.map((v) => v.admitted),
    [true, true, true, false],
    'key b has room but the global bucket (8) is full after three',
  );
  t.equal(more[3]!.policy, global);
  const first = await w1.check(hit('key:c'));
  t.equal(first.admitted, false);
});

t.test('the primary unreachable: 503 rate-limit-unavailable, never an admission', async (t) => {
  const w = new WorkerRateLimiter({ call: () => Promise.reject(new Error('channel closed')) });
  const err = await w.check(hit('key:a')).catch((e: unknown) => e);
  t.ok(err instanceof GatewayError);
  t.equal((err as GatewayError).code, 'rate-limit-unavailable');
  t.equal(w.connected(), true);
  await w.close();
});
