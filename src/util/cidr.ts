import { BlockList, isIP, isIPv4 } from 'node:net';

/** A parsed allow-list entry: an address and prefix length. */
export interface Cidr {
  readonly address: string;
  readonly prefix: number;
  readonly family: 'ipv4' | 'ipv6';
}

function stripZone(ip: string): string {
  const i = ip.indexOf('%');
  return i === -1 ? ip : ip.slice(0, i);
}

/** `::ffff:a.b.c.d` → `a.b.c.d`: an IPv4 client seen through a dual-stack socket. */
export function unmapIPv4(ip: string): string {
  if (ip.length > 7 && (ip.startsWith('::ffff:') || ip.startsWith('::FFFF:'))) {
    const v4 = ip.slice(7);
    if (isIPv4(v4)) return v4;
  }
  return ip;
}

/**
 * Parses `10.0.0.0/8`, `2001:db8::/32`, or a single address (/32, /128); undefined if
 * invalid. The one parser of networks in configuration and key restrictions: the prefix is
 * one to three decimal digits (no sign, space or empty prefix), the address is what
 * `net.isIP` accepts (no leading zeros in IPv4), and an IPv4-mapped IPv6 network is read
 * as the IPv4 network it names.
 */
export function parseCidr(entry: string): Cidr | undefined {
  const slash = entry.indexOf('/');
  const addr = unmapIPv4(slash === -1 ? entry : entry.slice(0, slash));
  const v = isIP(addr);
  if (v === 0) return undefined;
  const family = v === 4 ? 'ipv4' : 'ipv6';
  const max = v === 4 ? 32 : 128;
  let prefix = max;
  if (slash !== -1) {
    const p = entry.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p)) return undefined;
    prefix = Number(p);
    // A mapped IPv4 network written in IPv6 form (::ffff:10.0.0.0/104) becomes 10.0.0.0/8.
    if (addr !== entry.slice(0, slash)) {
      if (prefix < 96) return undefined;
      prefix -= 96;
    }
    if (prefix > max) return undefined;
  }
  return { address: addr, prefix, family };
}

/**
 * Compiles an allow-list into a matcher over client addresses (IPv4, IPv6, IPv4-mapped
 * IPv6 both ways). An empty list means "any address": undefined. Throws on an invalid entry.
 */
export function compileAllowIp(entries: readonly string[]): ((ip: string) => boolean) | undefined {
  if (entries.length === 0) return undefined;
  return compile(entries);
}

/**
 * Compiles a list of networks (`trustedProxies`) into a membership test; an empty list
 * matches nothing. Same parsing as {@link compileAllowIp}; throws on an invalid entry.
 */
export function cidrMatcher(entries: readonly string[]): (ip: string) => boolean {
  return entries.length === 0 ? () => false : compile(entries);
}

function compile(entries: readonly string[]): (ip: string) => boolean {
  const list = new BlockList();
  for (const e of entries) {
    const c = parseCidr(e);
    if (c === undefined) throw new TypeError(`invalid IP address or CIDR: ${e}`);
    list.addSubnet(c.address, c.prefix, c.family);
  }
  return (ip: string): boolean => {
    const a = unmapIPv4(stripZone(ip));
    const v = isIP(a);
    if (v === 0) return false;
    return list.check(a, v === 4 ? 'ipv4' : 'ipv6');
  };
}
