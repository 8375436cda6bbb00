import t from 'tap';
import { LocalRateLimiter } from '../../src/limits/local.js';
import { compilePolicy, type Hit } from '../../src/limits/policy.js';
import { RedisRateLimiter } from '../../src/limits/redis.js';
import { RedisRevocationStore } from '../../src/revocation/redis.js';
import { parseInfo, PrivateRedis, recordingLogger } from '../revocation/helpers.js';
import { serviceSkip } from '../helpers/services.js';

// With Redis, the rate limits ride on the revocation store's command connection: what both
// send in one turn of the event loop goes out as one corked write, and Redis answers both.

const skip = await serviceSkip('redis');
if (skip) t.plan(0, `skipping: ${skip}`);
else {
  const server = await PrivateRedis.start();
  t.teardown(() => server.kill());

  t.test('a turn\'s revocation checks and rate-limit script share one connection and one write', async (t) => {
    const store = new RedisRevocationStore({ url: server.url, logger: recordingLogger(), expiryGraceMs: 0 });
    t.teardown(() => store.close());
    t.ok(await store.waitReady(3_000), 'revocation store ready');
    t.ok(store.turn !== undefined, 'the Redis store offers its turns');
    const limiter = new RedisRateLimiter({ url: server.url, shared: store.turn, onError: 'deny', fallback: new LocalRateLimiter() });
    t.ok(limiter.connected(), 'the limiter is connected through the store\'s connection');
    await store.revoke('key:gone', Date.now() + 60_000);

    const policy = compilePolicy({ name: 'turn', limit: 3, window: 60_000, by: 'credential' });
    const hits: Hit[] = [{ policy, bucket: 'key:kept' }];
    const ref = (id: string) => ({ revocationId: id, subject: 'k:alice', issuedAt: Date.now() });
    await Promise.all([store.isRevoked(ref('key:warm')), limiter.check(hits)]); // loads the script on the connection

    // Every write on the shared socket, and whether it was made while the socket was corked.
    const stream = store.turn!.redis.stream;
    const writes: { corked: boolean; text: string }[] = [];
    const write = stream.write.bind(stream) as (chunk: unknown, ...rest: unknown[]) => boolean;
    stream.write = ((chunk: unknown, ...rest: unknown[]) => {
      writes.push({ corked: stream.writableCorked > 0, text: String(chunk) });
      return write(chunk, ...rest);
    }) as typeof stream.write;
    const calls = (m: Map<string, string>, cmd: string) => Number(/calls=(\d+)/.exec(m.get(`cmdstat_${cmd}`) ?? 'calls=0')![1]);
    const before = parseInfo(await server.admin((r) => r.info('commandstats')));
    writes.length = 0;
    const [gone, kept, v1, v2] = await Promise.all([store.isRevoked(ref('key:gone')), store.isRevoked(ref('key:kept')), limiter.check(hits), limiter.check(hits)]);
    const mine = writes.filter((w) => /MGET|EVALSHA/i.test(w.text));
    stream.write = write as typeof stream.write;
    const after = parseInfo(await server.admin((r) => r.info('commandstats')));

    t.same([gone, kept], [true, false], 'revocation answers as before');
    t.same([v1.admitted, v1.remaining, v2.admitted, v2.remaining], [true, 1, true, 0], 'and the limits count exactly (two of three left after the warm-up, then one, then none)');
    t.equal(calls(after, 'mget') - calls(before, 'mget'), 1, 'one MGET for the turn\'s checks');
    t.equal(calls(after, 'evalsha') - calls(before, 'evalsha'), 1, 'one script call for the turn\'s limits');
    t.equal(mine.length, 2, 'both commands written on the store\'s connection');
    t.ok(mine.every((w) => w.corked), 'while the socket was corked: one write to the kernel for both');

    const clients = await server.admin((r) => r.client('LIST') as Promise<string>);
    t.notMatch(clients, /name=portcullis-ratelimit/, 'the limiter opened no connection of its own');

    await limiter.close();
    t.equal(await store.isRevoked(ref('key:gone')), true, 'closing the limiter leaves the store\'s connection to the store');
  });

  t.test('gated checks of one turn: each answered for its own credential, only the unrevoked counted', async (t) => {
    const store = new RedisRevocationStore({ url: server.url, logger: recordingLogger(), expiryGraceMs: 0 });
    t.teardown(() => store.close());
    t.ok(await store.waitReady(3_000));
    const limiter = new RedisRateLimiter({ url: server.url, prefix: 'gated:', shared: store.turn, onError: 'deny', fallback: new LocalRateLimiter() });
    const policy = compilePolicy({ name: 'g', limit: 10, window: 60_000, by: 'global' });
    const hits: Hit[] = [{ policy, bucket: 'all' }];
    const now = Date.now();
    await store.revoke('key:b', now + 60_000);
    await store.revokeSubject('k:carol', now + 1_000);
    const ref = (id: string, subject: string) => store.gate({ revocationId: id, subject, issuedAt: now })!;
    const answers = await Promise.all([
      limiter.check(hits, ref('key:a', 'k:alice')),
      limiter.check(hits, ref('key:b', 'k:bob')),
      limiter.check(hits, ref('key:c', 'k:carol')),
      limiter.check(hits, ref('key:a', 'k:alice')),
      limiter.check(hits),
    ]);
    t.same(answers.map((a) => a.revoked), [false, true, true, false, undefined], 'revoked: by its marker, by its subject; ungated: not answered');
    t.same(answers.filter((a) => a.revoked !== true).map((a) => a.remaining), [9, 8, 7], 'the three others counted in order');
    t.equal((await limiter.check(hits)).remaining, 6, 'the revoked two were never counted');
  });
}
