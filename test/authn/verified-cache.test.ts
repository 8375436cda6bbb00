import t from 'tap';
import { VerifiedCache } from '../../src/authn/verified-cache.js';
import { ExpiringLru, LruMap } from '../../src/util/lru-map.js';

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
  t.same(m.keysWhere(() => true), ['d', 'c'], 'live entries, least recent first');
  t.same(m.keysWhere((v) => v === '5'), ['c'], 'those that match');
  m.clear();
  t.same(removed.slice(-2), ['d=4', 'c=5'], 'clear reports every entry');
  t.equal(m.size, 0);
});

t.test('ExpiringLru: values carry their own expiry; bound and removal notices as LruMap', async (t) => {
  let now = 1000;
  const removed: string[] = [];
  type V = { name: string; until: number };
  const m = new ExpiringLru<V>(2, (v) => v.until, () => now, (k, v) => removed.push(`${k}=${v.name}`));
  const a = { name: 'a', until: Number.POSITIVE_INFINITY };
  const b = { name: 'b', until: 1010 };
  m.set('a', a);
  m.set('b', b);
  now = 1010;
  t.equal(m.get('b'), b, 'alive at exactly its expiry');
  now = 1011;
  t.equal(m.peek('b'), undefined, 'stale one ms later');
  t.equal(m.peek('b', true), b, 'allowStale still sees it');
  t.same(m.keysWhere(() => true), ['a', 'b'], 'a scan sees the stale one too (an eviction must reach it)');
  t.equal(m.get('b'), undefined);
  t.same(removed, ['b=b'], 'an expired entry read is removed and reported');
  t.equal(m.get('a'), a, 'until Infinity: never stale');
  m.set('c', { name: 'c', until: 5000 });
  m.set('d', { name: 'd', until: 5000 });
  t.same(removed, ['b=b', 'a=a'], 'past the bound the least recently used goes');
  m.set('d', { name: 'd2', until: 6000 });
  t.same(removed.at(-1), 'd=d', 'a replaced value is reported');
  t.ok(m.has('c') && m.size === 2);
  m.clear();
  t.same(removed.slice(-2), ['c=c', 'd=d2'], 'clear reports every entry');
  for (const until of [Number.NaN, undefined as unknown as number, 0]) {
    m.set('bad', { name: 'bad', until });
    t.equal(m.get('bad'), undefined, `an expiry of ${until} is past: never served`);
  }
});

t.test('VerifiedCache: positive, negative and in-flight by one key', async (t) => {
  let now = 0;
  const c = new VerifiedCache<{ id: string; until: number }, string>({ max: 10, refusalMax: 10, now: () => now, until: (e) => e.until });
  const identity = { id: 'identity', until: 50 };
  c.set('k', identity);
  c.refuse('x', 'refused', 5);
  t.equal(c.get('k'), identity);
  t.equal(c.refusal('x'), 'refused');
  now = 6;
  t.equal(c.refusal('x'), undefined, 'a refusal is held for its ttl only');
  let resolve!: (v: never) => void;
  const p = c.track('k2', new Promise<never>((r) => { resolve = r; }));
  t.equal(c.running('k2'), p, 'concurrent callers share the running verification');
  resolve(undefined as never);
  await p;
  t.equal(c.running('k2'), undefined, 'settled: no longer in flight');
  now = 51;
  t.equal(c.get('k'), undefined, 'an identity is held until its own expiry');
  c.set('k', { id: 'again', until: 100 });
  c.clearIdentities();
  t.equal(c.get('k'), undefined);
});
