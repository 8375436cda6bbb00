import t from 'tap';
import { createHash } from 'node:crypto';
import { sha256Hex } from '../../src/util/sha256.js';
import { safeEqual } from '../../src/util/timing-safe.js';

t.test('sha256Hex and safeEqual', async (t) => {
  t.equal(sha256Hex('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  t.equal(sha256Hex('ключ'), createHash('sha256').update(Buffer.from('ключ', 'utf8')).digest('hex'), 'UTF-8');
  t.equal(sha256Hex(Buffer.from([1, 2, 3])), createHash('sha256').update(Buffer.from([1, 2, 3])).digest('hex'), 'bytes');
  const cases: Array<[string, string, boolean]> = [['a', 'a', true], ['a', 'b', false], ['a', 'aa', false], ['', '', true], ['', 'x', false]];
  for (const [a, b, want] of cases) t.equal(safeEqual(a, b), want, `${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
});
