import t from 'tap';
import { cidrMatcher, compileAllowIp, parseCidr } from '../../src/util/cidr.js';

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

t.test('parseCidr: what the one network parser accepts and refuses', async (t) => {
  const v4 = (address: string, prefix: number) => ({ address, prefix, family: 'ipv4' });
  const v6 = (address: string, prefix: number) => ({ address, prefix, family: 'ipv6' });
  const cases: Array<[string, unknown, string]> = [
    // IPv4
    ['0.0.0.0/0', v4('0.0.0.0', 0), 'the whole IPv4 space'],
    ['10.0.0.0/32', v4('10.0.0.0', 32), 'longest IPv4 prefix'],
    ['10.0.0.0/08', v4('10.0.0.0', 8), 'a prefix of up to three digits is read in decimal'],
    ['10.0.0.0/008', v4('10.0.0.0', 8), 'three digits'],
    ['10.0.0.0/0008', undefined, 'four digits'],
    ['010.0.0.1', undefined, 'leading zero in an IPv4 octet (octal to some parsers)'],
    ['10.0.0.01', undefined, 'leading zero in the last octet'],
    ['1.2.3.4.5', undefined, 'five octets'],
    ['256.0.0.0/8', undefined, 'octet out of range'],
    // prefixes
    ['10.0.0.0/', undefined, 'empty prefix'],
    ['10.0.0.0/-1', undefined, 'negative prefix'],
    ['10.0.0.0/+8', undefined, 'signed prefix'],
    ['10.0.0.0/ 8', undefined, 'space in the prefix'],
    ['10.0.0.0/8 ', undefined, 'trailing space'],
    [' 10.0.0.0/8', undefined, 'leading space'],
    ['10.0.0.0/0x8', undefined, 'hex prefix'],
    ['10.0.0.0/8.0', undefined, 'fractional prefix'],
    ['10.0.0.0/8/8', undefined, 'two prefixes'],
    ['10.0.0.0/33', undefined, 'IPv4 prefix past 32'],
    // IPv6
    ['::/0', v6('::', 0), 'the whole IPv6 space'],
    ['::1/128', v6('::1', 128), 'longest IPv6 prefix'],
    ['2001:db8::/032', v6('2001:db8::', 32), 'three-digit IPv6 prefix'],
    ['2001:DB8::/32', v6('2001:DB8::', 32), 'upper-case hex'],
    ['2001:db8::/129', undefined, 'IPv6 prefix past 128'],
    ['2001:db8::/1e2', undefined, 'exponent prefix'],
    ['2001:db8:::1', undefined, 'three colons'],
    ['2001:db8::1::2', undefined, 'two gaps'],
    ['[2001:db8::1]', undefined, 'brackets'],
    ['fe80::1%eth0', v6('fe80::1%eth0', 128), 'a zone id is kept (and ignored when matching)'],
    // IPv4-mapped IPv6
    ['::ffff:10.0.0.0/104', v4('10.0.0.0', 8), 'mapped network: the IPv4 /8 it names'],
    ['::FFFF:10.0.0.0/104', v4('10.0.0.0', 8), 'mapped, upper case'],
    ['::ffff:10.0.0.0/96', v4('10.0.0.0', 0), 'mapped /96: all of IPv4'],
    ['::ffff:10.0.0.0/128', v4('10.0.0.0', 32), 'mapped /128: one address'],
    ['::ffff:10.0.0.0/95', undefined, 'mapped prefix shorter than the mapping'],
    ['::ffff:010.0.0.1', undefined, 'mapped, leading zero in an octet'],
    ['::ffff:a00:0/104', v6('::ffff:a00:0', 104), 'mapped in hex form stays IPv6'],
  ];
  for (const [input, want, why] of cases) t.same(parseCidr(input), want, `${JSON.stringify(input)}: ${why}`);
});

t.test('cidrMatcher: trusted networks use the same parser', async (t) => {
  t.equal(cidrMatcher([])('10.0.0.1'), false, 'empty list: nothing is trusted');
  for (const bad of ['10.0.0.0/', '10.0.0.0/33', '10.0.0.0/+8', '010.0.0.1', 'proxy.internal']) {
    t.throws(() => cidrMatcher([bad]), TypeError, JSON.stringify(bad));
  }
  const trusted = cidrMatcher(['10.0.0.0/8', '::1', '::ffff:192.168.0.0/112']);
  const cases: Array<[string, boolean]> = [
    ['10.2.3.4', true],
    ['::ffff:10.2.3.4', true],
    ['11.0.0.1', false],
    ['::1', true],
    ['127.0.0.1', false],
    ['192.168.4.5', true],
    ['::ffff:192.168.4.5', true],
    ['192.169.0.1', false],
    ['', false],
  ];
  for (const [ip, want] of cases) t.equal(trusted(ip), want, ip);
});
