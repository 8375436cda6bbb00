import fc from 'fast-check';
import t from 'tap';
import { formatDuration } from '../../src/config/duration.js';
import { formatRateLimit, parseRateLimit, parseUses, WINDOW_MAX, WINDOW_MIN } from '../../src/keys/limits.js';
import { KeyServiceError } from '../../src/keys/service.js';

const refusal = (fn: () => unknown): string | undefined => {
  try {
    fn();
    return undefined;
  } catch (err) {
    return err instanceof KeyServiceError ? err.code : 'other';
  }
};

t.test('--rate-limit N/D: the forms it takes', async (t) => {
  const table: Array<[string, { limit: number; window: number } | null]> = [
    ['100/1m', { limit: 100, window: 60_000 }],
    ['1/1s', { limit: 1, window: 1000 }],
    [' 5 / 30s ', { limit: 5, window: 30_000 }],
    ['1000/1h', { limit: 1000, window: 3_600_000 }],
    ['10/1d', { limit: 10, window: 86_400_000 }],
    ['3/1500ms', { limit: 3, window: 1500 }],
    ['2/1.5m', { limit: 2, window: 90_000 }],
    ['none', null],
  ];
  for (const [text, want] of table) t.same(parseRateLimit(text), want, text);
});

t.test('--rate-limit: what it refuses, as invalid-argument', async (t) => {
  for (const bad of ['', '100', '/1m', '100/', '0/1m', '-1/1m', '1.5/1m', '10/1x', '10/m', '10/999ms', '10/2d', '10/1m/1m', 'ten/1m', '1000000001/1m', 'None']) {
    t.equal(refusal(() => parseRateLimit(bad)), 'invalid-argument', JSON.stringify(bad));
  }
});

t.test('--rate-limit: every limit and window in range round-trips through its printed form', async (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 1_000_000_000 }), fc.integer({ min: WINDOW_MIN, max: WINDOW_MAX }), (limit, window) => {
      const back = parseRateLimit(formatRateLimit({ limit, window }));
      return back !== null && back.limit === limit && back.window === window;
    }),
  );
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 100 }), fc.integer({ min: 1, max: WINDOW_MIN - 1 }), (limit, window) => refusal(() => parseRateLimit(`${limit}/${formatDuration(window)}`)) === 'invalid-argument'),
  );
  t.pass('round trips hold; windows under 1s are refused');
});

t.test('--uses N', async (t) => {
  t.equal(parseUses('0'), 0, 'zero: every request refused');
  t.equal(parseUses('1000'), 1000);
  t.equal(parseUses('unlimited'), null);
  for (const bad of ['', '-1', '1.5', '1e3', 'many', 'none', '9007199254740993']) t.equal(refusal(() => parseUses(bad)), 'invalid-argument', JSON.stringify(bad));
});
