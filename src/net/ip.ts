import { BlockList, isIP } from 'node:net';

/** Strips the IPv4-mapped IPv6 prefix so `::ffff:10.0.0.1` is matched as `10.0.0.1`. */
export function plainIp(ip: string): string {
  return ip.startsWith('::ffff:') && isIP(ip.slice(7)) === 4 ? ip.slice(7) : ip;
}

/** Compiles CIDRs (or single addresses) into a matcher. Throws on malformed input. */
export function cidrMatcher(cidrs: readonly string[]): (ip: string) => boolean {
  if (cidrs.length === 0) return () => false;
  const list = new BlockList();
  for (const c of cidrs) {
    const [addr, bits] = c.split('/') as [string, string | undefined];
    const family = isIP(addr);
    if (family === 0) throw new Error(`not an IP address: ${c}`);
    const type = family === 6 ? 'ipv6' : 'ipv4';
    if (bits === undefined) list.addAddress(addr, type);
    else {
      const n = Number(bits);
      if (!Number.isInteger(n) || n < 0 || n > (family === 6 ? 128 : 32)) throw new Error(`bad prefix length in ${c}`);
      list.addSubnet(addr, n, type);
    }
  }
  return (ip: string) => {
    const p = plainIp(ip);
    const family = isIP(p);
    if (family === 0) return false;
    return list.check(p, family === 6 ? 'ipv6' : 'ipv4');
  };
}
