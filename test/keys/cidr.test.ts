import t from 'tap';
import { compileAllowIp, parseCidr } from '../../src/keys/cidr.js';

t.test('parseCidr', async (t) => {
  const cases: Array<[string, unknown]> = [
    ['10.0.0.0/8', { address: '10.0.0.0', prefix: 8, family: 'ipv4' }],
    ['192.168.1.7', { address: '192.168.1.7', prefix: 32, family: 'ipv4' }],
    ['2001:db8::/32', { address: '2001:db8::', prefix: 32, family: 'ipv6' }],
    ['::1', { address: '::1', prefix: 128, family: 'ipv6' }],
    ['::ffff:10.0.0.0/104', { address: '10.0.0.0', prefix: 8, family: 'ipv4' }],
    ['::ffff:10.1.2.3', { address: '10.1.2.3', prefix: 32, family: 'ipv4' }],
    ['10.0.0.0/33', undefined],
    ['2001:db8::/129', undefined],
    ['10.0.0.0/', undefined],
    ['10.0.0.0/a', undefined],
    ['10.0.0/8', undefined],
    ['example.com', undefined],
    ['', undefined],
    ['::ffff:10.0.0.0/64', undefined],
  ];
  for (const [input, want] of cases) t.same(parseCidr(input), want, JSON.stringify(input));
});

t.test('compileAllowIp', async (t) => {
  t.equal(compileAllowIp([]), undefined, 'empty list: any address');
  t.throws(() => compileAllowIp(['nope']), TypeError);
  const allow = compileAllowIp(['10.0.0.0/8', '2001:db8::/32', '192.168.1.7', '::ffff:172.16.0.0/108'])!;
  const cases: Array<[string, boolean]> = [
    ['10.1.2.3', true],
    ['11.0.0.1', false],
    ['::ffff:10.1.2.3', true],
    ['::FFFF:10.1.2.3', true],
    ['::ffff:11.1.2.3', false],
    ['192.168.1.7', true],
    ['192.168.1.8', false],
    ['2001:db8::1', true],
    ['2001:DB8:0:0:0:0:0:1', true],
    ['2001:db9::1', false],
    ['fe80::1%eth0', false],
    ['172.16.5.5', true],
    ['172.32.0.1', false],
    ['', false],
    ['garbage', false],
  ];
  for (const [ip, want] of cases) t.equal(allow(ip), want, ip);
  const v6only = compileAllowIp(['::1'])!;
  t.equal(v6only('::1'), true);
  t.equal(v6only('127.0.0.1'), false, 'IPv6 loopback is not IPv4 loopback');
});
