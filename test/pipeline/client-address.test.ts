import t from 'tap';
import type { IncomingHttpHeaders } from 'node:http';
import { parseConfig } from '../../src/config/load.js';
import { clientAddress } from '../../src/pipeline/decide.js';
import { buildRuntime } from '../../src/runtime.js';

function runtime(trustedProxies: string) {
  const { config } = parseConfig(
    `upstreams:
  api: { url: "http://127.0.0.1:3000" }
trustedProxies: ${trustedProxies}
routes:
  - { match: { path: "/**" }, upstream: api }
`,
    'gw.yaml',
    {},
  );
  return buildRuntime(config, {});
}
const behindProxies = runtime('["10.0.0.0/8", "2001:db8::/32"]');
const direct = runtime('[]');

const CLIENT = '198.51.100.7';
const facts = (peerIp: string, xff?: string | string[]) => {
  const headers: IncomingHttpHeaders = { host: 'api.example' };
  if (xff !== undefined) (headers as Record<string, unknown>)['x-forwarded-for'] = xff;
  return { method: 'GET', target: '/', headers, rawHeaders: [], peerIp };
};

const cases: { name: string; rt?: typeof direct; peer: string; xff?: string | string[]; clientIp: string; peerTrusted: boolean }[] = [
  // An untrusted peer is the client, whatever it claims.
  { name: 'untrusted peer, no header', peer: '203.0.113.9', clientIp: '203.0.113.9', peerTrusted: false },
  { name: 'untrusted peer claiming an address', peer: '203.0.113.9', xff: CLIENT, clientIp: '203.0.113.9', peerTrusted: false },
  { name: 'untrusted peer claiming a trusted address', peer: '203.0.113.9', xff: '10.0.0.1', clientIp: '203.0.113.9', peerTrusted: false },
  { name: 'untrusted peer over a dual-stack socket', peer: '::ffff:203.0.113.9', xff: CLIENT, clientIp: '203.0.113.9', peerTrusted: false },
  { name: 'no trusted proxies configured: a private peer is not trusted', rt: direct, peer: '10.0.0.2', xff: CLIENT, clientIp: '10.0.0.2', peerTrusted: false },
  { name: 'a loopback peer is not trusted unless listed', peer: '127.0.0.1', xff: CLIENT, clientIp: '127.0.0.1', peerTrusted: false },
  // A trusted peer: the nearest address it did not itself add, reading right to left.
  { name: 'trusted peer, no header', peer: '10.0.0.2', clientIp: '10.0.0.2', peerTrusted: true },
  { name: 'trusted peer, empty header', peer: '10.0.0.2', xff: '', clientIp: '10.0.0.2', peerTrusted: true },
  { name: 'trusted peer naming the client', peer: '10.0.0.2', xff: CLIENT, clientIp: CLIENT, peerTrusted: true },
  { name: 'trusted peer over a dual-stack socket', peer: '::ffff:10.0.0.2', xff: CLIENT, clientIp: CLIENT, peerTrusted: true },
  { name: 'IPv6 trusted peer', peer: '2001:db8::1', xff: CLIENT, clientIp: CLIENT, peerTrusted: true },
  { name: 'a chain of trusted proxies is skipped', peer: '10.0.0.2', xff: `${CLIENT}, 10.0.0.5, 2001:db8::9`, clientIp: CLIENT, peerTrusted: true },
  { name: 'addresses the client prepended are not believed', peer: '10.0.0.2', xff: `127.0.0.1, 10.9.9.9, ${CLIENT}, 10.0.0.5`, clientIp: CLIENT, peerTrusted: true },
  { name: 'a forged trusted address left of the client is not reached', peer: '10.0.0.2', xff: `10.1.1.1, ${CLIENT}`, clientIp: CLIENT, peerTrusted: true },
  { name: 'spaces around entries', peer: '10.0.0.2', xff: `   ${CLIENT}   ,  10.0.0.5 `, clientIp: CLIENT, peerTrusted: true },
  { name: 'empty entries are skipped', peer: '10.0.0.2', xff: `, ,${CLIENT},,`, clientIp: CLIENT, peerTrusted: true },
  { name: 'IPv4-mapped entry', peer: '10.0.0.2', xff: `::ffff:${CLIENT}`, clientIp: CLIENT, peerTrusted: true },
  { name: 'IPv4-mapped trusted entry is skipped', peer: '10.0.0.2', xff: `${CLIENT}, ::ffff:10.0.0.5`, clientIp: CLIENT, peerTrusted: true },
  { name: 'every entry trusted: the farthest one', peer: '10.0.0.2', xff: '10.0.0.7, 10.0.0.5', clientIp: '10.0.0.7', peerTrusted: true },
  { name: 'only empty entries: the peer', peer: '10.0.0.2', xff: ' , ,', clientIp: '10.0.0.2', peerTrusted: true },
  // What a trusted proxy wrote is taken as written: a non-address matches no allow-list.
  { name: 'a non-address from the nearest untrusted hop', peer: '10.0.0.2', xff: `${CLIENT}, unknown`, clientIp: 'unknown', peerTrusted: true },
  { name: 'a header that is not one string: the peer', peer: '10.0.0.2', xff: [CLIENT, '10.0.0.5'], clientIp: '10.0.0.2', peerTrusted: true },
];

t.test('clientAddress: the socket peer, or behind a trusted proxy the nearest untrusted hop', async (t) => {
  for (const c of cases) {
    t.same(clientAddress(c.rt ?? behindProxies, facts(c.peer, c.xff)), { clientIp: c.clientIp, peerTrusted: c.peerTrusted }, c.name);
  }
});
