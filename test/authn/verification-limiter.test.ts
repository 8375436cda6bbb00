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

t.test('one key id holds at most a sixteenth of the queue; others still find room', async (t) => {
  const l = new VerificationLimiter(1, 64);
  t.equal(l.acquire('x'), undefined);
  const order: string[] = [];
  for (let i = 0; i < 4; i++) void wait(l, 'attacked', `a${i}`, order);
  t.throws(() => l.acquire('attacked'), { code: 'store-unavailable' }, 'a fifth waiter of one key id is refused 503');
  t.equal(l.queued, 4);
  void wait(l, 'holder', 'holder', order);
  t.equal(l.queued, 5, 'another key id is queued');
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
