import t from 'tap';
import fc from 'fast-check';
import { AttemptLimiter, clientBucket } from '../../src/util/attempt-limiter.js';
import { TestClock } from '../keys/helpers.js';


t.test('clientBucket: IPv4 as is, IPv6 by its /64', async (t) => {
  const table: Array<[string, string]> = [
    ['192.0.2.7', '192.0.2.7'],
    ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64'],
    ['2001:db8:1:2::1', '2001:db8:1:2::/64'],
    ['2001:DB8:1:2:ffff::9', '2001:db8:1:2::/64'],
    ['2001:0db8:0001:0002::', '2001:db8:1:2::/64'],
    ['2001:db8::1', '2001:db8:0:0::/64'],
    ['::1', '0:0:0:0::/64'],
    ['::', '0:0:0:0::/64'],
    ['fe80::1%eth0', 'fe80:0:0:0::/64'],
    ['64:ff9b::192.0.2.1', '64:ff9b:0:0::/64'],
    ['2001:db8:1:2:3:4:192.0.2.1', '2001:db8:1:2::/64'],
    ['', ''],
    ['not an address', 'not an address'],
  ];
  for (const [ip, bucket] of table) t.equal(clientBucket(ip), bucket, JSON.stringify(ip));
});

/** What a refusal would say, as `rate-limited <Retry-After>` (undefined: may try). */
function refused(l: AttemptLimiter, keyId: string | undefined, client: string): string | undefined {
  const wait = l.wait(keyId, client);
  return wait === undefined ? undefined : `rate-limited ${wait}`;
}

t.test('who is refused, step by step', async (t) => {
  const clock = new TestClock();
  const l = new AttemptLimiter({ max: 3, window: 60_000 }, () => clock.now());
  type Step = [what: 'fail' | 'undo' | 'advance', keyId: string | undefined, client: string, ms?: number] | [what: 'check', keyId: string | undefined, client: string, expect: string | undefined];
  const steps: Step[] = [
    ['check', 'k1', '198.51.100.1', undefined],
    ['fail', 'k1', '198.51.100.1'],
    ['fail', 'k1', '198.51.100.1'],
    ['check', 'k1', '198.51.100.1', undefined],
    ['fail', 'k1', '198.51.100.1'],
    ['check', 'k1', '198.51.100.1', 'rate-limited 60'],
    ['check', 'k2', '198.51.100.1', 'rate-limited 60'],
    ['check', undefined, '198.51.100.1', 'rate-limited 60'],
    ['check', 'k1', '192.0.2.1', undefined],
    ['fail', 'k2', '192.0.2.2'],
    ['check', 'k1', '192.0.2.2', 'rate-limited 60'],
    ['check', 'k2', '192.0.2.2', undefined],
    ['fail', 'k1', '2001:db8:1:2::1'],
    ['check', 'k1', '2001:db8:1:2::99', 'rate-limited 60'],
    ['check', 'k1', '2001:db8:1:3::1', undefined],
    ['advance', undefined, '', 30_000],
    ['check', 'k1', '198.51.100.1', 'rate-limited 30'],
    ['fail', 'k3', '203.0.113.5'],
    ['undo', 'k3', '203.0.113.5'],
    ['fail', 'k1', '203.0.113.5'],
    ['undo', 'k1', '203.0.113.5'],
    ['check', 'k1', '203.0.113.5', undefined],
    ['advance', undefined, '', 30_000],
    ['check', 'k1', '198.51.100.1', undefined],
    ['check', 'k1', '192.0.2.2', undefined],
    ['undo', 'k9', '198.51.100.9'],
    ['check', 'k9', '198.51.100.9', undefined],
  ];
  steps.forEach((s, i) => {
    if (s[0] === 'fail') l.count(s[1], s[2], 1);
    else if (s[0] === 'undo') l.count(s[1], s[2], -1);
    else if (s[0] === 'advance') clock.advance(s[3]!);
    else t.equal(refused(l, s[1], s[2]), s[3], `step ${i}: ${s[2]} trying ${s[1] ?? '(legacy)'}`);
  });
});

t.test('property: a client that has not failed is never refused, whatever others did', async () => {
  const clients = fc.constantFrom('198.51.100.1', '198.51.100.2', '203.0.113.3', '2001:db8:1:2::5', '2001:db8:9:9::5');
  const keys = fc.constantFrom('k1', 'k2', undefined);
  const event = fc.record({ keyId: keys, client: clients, delta: fc.constantFrom<1 | -1>(1, 1, 1, -1), advance: fc.nat(20_000) });
  fc.assert(
    fc.property(fc.array(event, { maxLength: 200 }), keys, fc.integer({ min: 1, max: 5 }), (events, keyId, max) => {
      const clock = new TestClock();
      const l = new AttemptLimiter({ max, window: 60_000 }, () => clock.now());
      for (const e of events) {
        clock.advance(e.advance);
        l.count(e.keyId, e.client, e.delta);
      }
      // 192.0.2.0/24 and 2001:db8:ffff::/48 never appear above.
      return refused(l, keyId, '192.0.2.77') === undefined && refused(l, keyId, '2001:db8:ffff:1::77') === undefined;
    }),
  );
});

t.test('property: once a client has `max` failures in the window it is refused for any key', async () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 10 }), fc.array(fc.constantFrom('k1', 'k2', undefined), { minLength: 1, maxLength: 10 }), (max, ids) => {
      const clock = new TestClock();
      const l = new AttemptLimiter({ max, window: 60_000 }, () => clock.now());
      for (let i = 0; i < max; i++) l.count(ids[i % ids.length], '198.51.100.1', 1);
      return ids.every((id) => refused(l, id, '198.51.100.1') !== undefined);
    }),
  );
});
