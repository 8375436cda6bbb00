import t from 'tap';
import { VerifiedCache } from '../../src/authn/verified-cache.js';
import { LruMap } from '../../src/util/lru-map.js';

t.test('LruMap: per-entry expiry by the injected clock, bound, and removal notices', async (t) => {
  let now = 1000;
  const removed: string[] = [];
  const m = new LruMap<string>(2, 100, () => now, (k, v) => removed.push(`${k}=${v}`));
  m.set('a', '1');
  m.set('b', '2', 10);
  now += 10;
  t.equal(m.get('b'), '2', 'alive at exactly its ttl');
  now += 1;
  t.equal(m.peek('b'), undefined, 'stale one ms later');
  t.equal(m.peek('b', true), '2', 'allowStale still sees it');
  t.equal(m.get('b'), undefined);
  t.same(removed, ['b=2'], 'an expired entry read is removed and reported');
  m.set('c', '3');
  m.set('d', '4');
  t.same(removed, ['b=2', 'a=1'], 'past the bound the least recently used goes');
  m.set('c', '3');
  t.same(removed.length, 2, 'storing the same value again is no removal');
  m.set('c', '5');
  t.same(removed.at(-1), 'c=3', 'a replaced value is reported');
  t.same([...m.entries()].map(([k]) => k), ['d', 'c'], 'live entries, least recent first');
  m.clear();
  t.same(removed.slice(-2), ['d=4', 'c=5'], 'clear reports every entry');
  t.equal(m.size, 0);
});

t.test('VerifiedCache: positive, negative and in-flight by one key', async (t) => {
  let now = 0;
  const c = new VerifiedCache<string, string>({ max: 10, refusalMax: 10, now: () => now });
  c.set('k', 'identity', 50);
  c.refuse('x', 'refused', 5);
  t.equal(c.get('k'), 'identity');
  t.equal(c.refusal('x'), 'refused');
  now = 6;
  t.equal(c.refusal('x'), undefined, 'a refusal is held for its ttl only');
  let resolve!: (v: never) => void;
  const p = c.track('k2', new Promise<never>((r) => { resolve = r; }));
  t.equal(c.running('k2'), p, 'concurrent callers share the running verification');
  resolve(undefined as never);
  await p;
  t.equal(c.running('k2'), undefined, 'settled: no longer in flight');
  c.clearIdentities();
  t.equal(c.get('k'), undefined);
});
