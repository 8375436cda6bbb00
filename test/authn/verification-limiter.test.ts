import t from 'tap';
import { VerificationLimiter } from '../../src/authn/api-key/verification-limiter.js';

/** Queues a waiter for `keyId`, recording its name in `order` once it holds a slot. */
function wait(l: VerificationLimiter, keyId: string, name: string, order: string[]): Promise<void> {
  const w = l.acquire(keyId);
  if (w === undefined) throw new Error(`${name} got a slot at once`);
  return w.then(() => void order.push(name));
}

const tick = () => new Promise((r) => setImmediate(r));

t.test('slots are taken at once up to max, then queued; a release hands the slot on', async (t) => {
  const l = new VerificationLimiter(2, 32);
  t.equal(l.acquire('a'), undefined);
  t.equal(l.acquire('b'), undefined);
  t.equal(l.active, 2);
  const order: string[] = [];
  void wait(l, 'a', 'a1', order);
  t.equal(l.queued, 1);
  l.release();
  await tick();
  t.same(order, ['a1'], 'the waiter got the freed slot');
  t.same([l.active, l.queued], [2, 0], 'still two running, none waiting');
  l.release();
  l.release();
  t.same([l.active, l.queued], [0, 0], 'all free');
});

t.test('freed slots go round robin between key ids, not in arrival order', async (t) => {
  const l = new VerificationLimiter(1, 128);
  t.equal(l.acquire('x'), undefined);
  const order: string[] = [];
  for (let i = 1; i <= 4; i++) void wait(l, 'attacked', `attacked${i}`, order);
  void wait(l, 'holder', 'holder', order);
  void wait(l, 'other', 'other', order);
  void wait(l, 'attacked', 'attacked5', order);
  for (let i = 0; i < 7; i++) {
    l.release();
    await tick();
  }
  t.same(order.slice(0, 3), ['attacked1', 'holder', 'other'], 'each waiting key id gets a turn before one gets a second');
  t.same(order.slice(3), ['attacked2', 'attacked3', 'attacked4', 'attacked5'], 'then the rest, in arrival order');
});

t.test('no key id has a cap of its own: its holder queues as long as the queue has room', async (t) => {
  const l = new VerificationLimiter(1, 64);
  t.equal(l.acquire('x'), undefined);
  const order: string[] = [];
  for (let i = 0; i < 40; i++) void wait(l, 'attacked', `a${i}`, order);
  void wait(l, 'attacked', 'holder', order);
  t.equal(l.queued, 41, 'forty forgeries and the holder all wait');
});

t.test('a full queue: a newcomer not under attack takes the place of a waiter of the largest attacked key id', async (t) => {
  const l = new VerificationLimiter(1, 4, (k) => k === 'attacked');
  t.equal(l.acquire('x'), undefined);
  const order: string[] = [];
  const refused: string[] = [];
  const queue = (k: string, name: string) => {
    const w = l.acquire(k);
    if (w === undefined) throw new Error('no wait');
    return w.then(() => void order.push(name), (err: { code?: string }) => void refused.push(`${name}: ${err.code}`));
  };
  for (let i = 1; i <= 3; i++) void queue('attacked', `a${i}`);
  void queue('other', 'o1');
  t.equal(l.queued, 4, 'full');
  t.throws(() => l.acquire('attacked'), { code: 'store-unavailable' }, 'a newcomer of the attacked key id is refused');
  void queue('holder', 'holder');
  await tick();
  t.equal(refused.length, 1, 'one waiter lost its place');
  t.match(refused[0], /^a[123]: store-unavailable$/, 'a waiter of the attacked key id');
  t.equal(l.queued, 4, 'still full');
  for (let i = 0; i < 4; i++) {
    l.release();
    await tick();
  }
  t.equal(order.indexOf('holder'), 2, 'round robin: attacked, other, holder');
  t.same(order.filter((n) => n.startsWith('a')).length, 2, 'the two attacked waiters left run too');
});

t.test('a full queue with no key id under attack refuses the newcomer: no one loses a place', async (t) => {
  const l = new VerificationLimiter(1, 3, () => false);
  t.equal(l.acquire('x'), undefined);
  const refused: string[] = [];
  for (const k of ['a', 'a', 'b']) void l.acquire(k)!.catch(() => void refused.push(k));
  t.throws(() => l.acquire('c'), { code: 'store-unavailable' });
  await tick();
  t.same(refused, [], 'the queued waiters keep their places');
});

t.test('the whole queue is bounded too; an empty queue refuses every waiter', async (t) => {
  const l = new VerificationLimiter(1, 3);
  t.equal(l.acquire('x'), undefined);
  const order: string[] = [];
  for (const k of ['a', 'b', 'c']) void wait(l, k, k, order);
  t.throws(() => l.acquire('d'), { code: 'store-unavailable' }, 'queue full');
  const none = new VerificationLimiter(1, 0);
  t.equal(none.acquire('a'), undefined);
  t.throws(() => none.acquire('b'), { code: 'store-unavailable' }, 'verificationQueue: 0 queues nothing');
});
