import t from 'tap';
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import type { Identity } from '../../src/authn/types.js';
import { parseConfig } from '../../src/config/load.js';
import { type ForwardContext, forwardPlan, isOwnedHeader, upstreamHeaders } from '../../src/identity/headers.js';

const upstream = `upstreams:
  api: { url: "http://127.0.0.1:3000" }
routes:
  - { match: { path: "/**" }, upstream: api }
`;
function plan(extra = '') {
  const { config } = parseConfig(upstream + extra, 'gw.yaml', {});
  return forwardPlan(config.identity, config.apiKeys.headers);
}
const defaults = plan();
const custom = plan(`identity:
  headers: { subject: x-user, role: x-user-role, scopes: x-user-scopes, keyId: x-user-key, method: x-user-method }
  namespace: [x-auth-, x-internal-]
  assertion: { header: x-identity-jwt }
apiKeys:
  headers: [X-Service-Key]
`);
const forwarding = plan('identity: { forwardCredential: true }\n');

const alice: Identity = {
  method: 'apiKey',
  subject: 'alice',
  role: 'premium',
  roleRank: 1,
  scopes: ['films:read', 'reviews:write'],
  scopesHeader: 'films:read reviews:write',
  keyId: 'k1',
  audiences: [],
  issuedAt: 0,
  revocationId: 'key:k1',
};
const bob: Identity = { ...alice, method: 'jwt', subject: 'bob', role: 'basic', roleRank: 0, scopes: [], scopesHeader: '', keyId: undefined, revocationId: 'jti:j1' };

const PEER = '203.0.113.9';
const ctx: ForwardContext = { clientIp: PEER, peerIp: PEER, peerTrusted: false, proto: 'http', requestId: 'rid-1', upgrade: false };
const trusted: ForwardContext = { ...ctx, peerIp: '10.0.0.2', peerTrusted: true };
const viaKey = (value: string): ForwardContext => ({ ...ctx, verified: { kind: 'apiKey', value, source: 'x-api-key' } });
const viaAuth = (value: string): ForwardContext => ({ ...ctx, verified: { kind: 'apiKey', value, source: 'authorization' } });
/** What the gateway always sets for a request from the untrusted peer with `Host: api.example`. */
const set = { 'x-forwarded-for': PEER, 'x-forwarded-proto': 'http', 'x-forwarded-host': 'api.example', 'x-request-id': 'rid-1' };
const aliceHeaders = { 'x-auth-subject': 'alice', 'x-auth-role': 'premium', 'x-auth-scopes': 'films:read reviews:write', 'x-auth-method': 'apiKey', 'x-auth-key-id': 'k1' };
const host = 'api.example';

const cases: { name: string; inbound: IncomingHttpHeaders; identity?: Identity | null; plan?: typeof defaults; ctx?: ForwardContext; want: OutgoingHttpHeaders }[] = [
  { name: 'ordinary headers pass; identity and forwarding headers are set', inbound: { host, accept: '*/*', 'content-type': 'text/plain' }, want: { host, accept: '*/*', 'content-type': 'text/plain', ...set, ...aliceHeaders } },
  { name: 'public route: no identity headers at all', inbound: { host }, identity: null, want: { host, ...set } },
  // The identity namespace: nothing a client sends survives under a name the gateway owns.
  {
    name: 'client-sent identity headers are replaced by the verified identity',
    inbound: { host, 'x-auth-subject': 'root', 'x-auth-role': 'admin', 'x-auth-scopes': '*', 'x-auth-method': 'internal', 'x-auth-key-id': 'k0' },
    want: { host, ...set, ...aliceHeaders },
  },
  {
    name: 'client-sent identity headers on a public route are removed, not forwarded',
    inbound: { host, 'x-auth-subject': 'root', 'x-auth-role': 'admin' },
    identity: null,
    want: { host, ...set },
  },
  { name: 'any header in the namespace is removed', inbound: { host, 'x-auth-anything': '1', 'x-auth-': '2', 'x-auth-assertion': 'forged' }, identity: null, want: { host, ...set } },
  { name: 'a key id the identity lacks is not taken from the client', inbound: { host, 'x-auth-key-id': 'k0' }, identity: bob, want: { host, ...set, 'x-auth-subject': 'bob', 'x-auth-role': 'basic', 'x-auth-scopes': '', 'x-auth-method': 'jwt' } },
  { name: 'names that only resemble the namespace pass', inbound: { host, 'x-authx-subject': 'a', 'x-auth': 'b', 'auth-subject': 'c' }, identity: null, want: { host, 'x-authx-subject': 'a', 'x-auth': 'b', 'auth-subject': 'c', ...set } },
  {
    name: 'configured names outside the namespace, the assertion header and a second prefix are owned too',
    plan: custom,
    inbound: { host, 'x-user': 'root', 'x-user-role': 'admin', 'x-user-key': 'k0', 'x-identity-jwt': 'forged', 'x-internal-trace': '1', 'x-auth-subject': 'root' },
    want: { host, ...set, 'x-user': 'alice', 'x-user-role': 'premium', 'x-user-scopes': 'films:read reviews:write', 'x-user-method': 'apiKey', 'x-user-key': 'k1' },
  },
  // Hop-by-hop headers and headers named in Connection describe the client's connection only.
  {
    name: 'hop-by-hop headers are removed',
    inbound: { host, connection: 'keep-alive', 'keep-alive': 'timeout=5', 'proxy-connection': 'keep-alive', te: 'trailers', trailer: 'x-t', upgrade: 'h2c', 'proxy-authorization': 'Basic eDp5', 'proxy-authenticate': 'Basic', 'http2-settings': 'AAA', expect: '100-continue' },
    identity: null,
    want: { host, ...set },
  },
  // Framing: the body goes upstream framed as it came, in one spelling.
  { name: 'a chunked body stays chunked', inbound: { host, 'transfer-encoding': 'chunked' }, identity: null, want: { host, 'transfer-encoding': 'chunked', ...set } },
  { name: 'a Content-Length passes as it came', inbound: { host, 'content-length': '42' }, identity: null, want: { host, 'content-length': '42', ...set } },
  { name: 'a zero Content-Length stays zero', inbound: { host, 'content-length': '0' }, identity: null, want: { host, 'content-length': '0', ...set } },
  { name: 'leading zeros are dropped from a Content-Length', inbound: { host, 'content-length': '0042' }, identity: null, want: { host, 'content-length': '42', ...set } },
  { name: 'a Content-Length of zeros is 0', inbound: { host, 'content-length': '000' }, identity: null, want: { host, 'content-length': '0', ...set } },
  { name: 'headers named in Connection are removed, in any case and spacing', inbound: { host, connection: 'close ,  X-Secret,x-other', 'x-secret': 's', 'x-other': 'o', 'x-kept': 'k' }, identity: null, want: { host, 'x-kept': 'k', ...set } },
  { name: 'websocket upgrade keeps Upgrade and says Connection: upgrade', inbound: { host, connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-key': 'abc' }, identity: null, ctx: { ...ctx, upgrade: true }, want: { host, upgrade: 'websocket', 'sec-websocket-key': 'abc', connection: 'upgrade', ...set } },
  // Forwarding headers: an untrusted peer cannot claim an address, scheme, host, URL or method.
  {
    name: 'forwarding headers from an untrusted peer are replaced or removed',
    inbound: {
      host,
      'x-forwarded-for': '127.0.0.1',
      'x-forwarded-proto': 'https',
      'x-forwarded-host': 'admin.internal',
      'x-forwarded-port': '443',
      'x-forwarded-prefix': '/admin',
      'x-forwarded-uri': '/admin',
      'x-forwarded-method': 'DELETE',
      'x-forwarded-anything': '1',
      forwarded: 'for=127.0.0.1;proto=https',
      'x-real-ip': '127.0.0.1',
      'x-client-ip': '127.0.0.1',
      'true-client-ip': '127.0.0.1',
      'x-cluster-client-ip': '127.0.0.1',
      'x-original-url': '/admin',
      'x-rewrite-url': '/admin',
      'x-original-uri': '/admin',
      'x-original-method': 'DELETE',
      'x-original-host': 'admin.internal',
      'x-http-method-override': 'DELETE',
      'x-http-method': 'DELETE',
      'x-method-override': 'DELETE',
    },
    identity: null,
    want: { host, ...set },
  },
  {
    name: 'a trusted proxy keeps its forwarding headers; its address is appended',
    inbound: { host, 'x-forwarded-for': '198.51.100.7', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'www.example', forwarded: 'for=198.51.100.7', 'x-real-ip': '198.51.100.7' },
    identity: null,
    ctx: trusted,
    want: { host, 'x-forwarded-for': '198.51.100.7, 10.0.0.2', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'www.example', forwarded: 'for=198.51.100.7', 'x-real-ip': '198.51.100.7', 'x-request-id': 'rid-1' },
  },
  {
    name: 'client-address, host and path headers are removed even from a trusted proxy',
    inbound: {
      host,
      'x-forwarded-path': '/admin',
      'x-original-path': '/admin',
      'x-envoy-original-path': '/admin',
      'x-original-url': '/admin',
      'x-rewrite-url': '/admin',
      'x-host': 'admin.internal',
      'client-ip': '127.0.0.1',
      'true-client-ip': '127.0.0.1',
      'cf-connecting-ip': '127.0.0.1',
      'x-client-ip': '127.0.0.1',
      'x-cluster-client-ip': '127.0.0.1',
    },
    identity: null,
    ctx: trusted,
    want: { host, 'x-forwarded-for': '10.0.0.2', 'x-forwarded-proto': 'http', 'x-forwarded-host': host, 'x-request-id': 'rid-1' },
  },
  { name: 'a trusted proxy that sent none gets them set', inbound: { host }, identity: null, ctx: trusted, want: { host, 'x-forwarded-for': '10.0.0.2', 'x-forwarded-proto': 'http', 'x-forwarded-host': host, 'x-request-id': 'rid-1' } },
  { name: 'a trusted proxy still cannot set identity headers', inbound: { host, 'x-auth-subject': 'root' }, identity: null, ctx: trusted, want: { host, 'x-forwarded-for': '10.0.0.2', 'x-forwarded-proto': 'http', 'x-forwarded-host': host, 'x-request-id': 'rid-1' } },
  { name: 'no Host: no X-Forwarded-Host', inbound: {}, identity: null, want: { 'x-forwarded-for': PEER, 'x-forwarded-proto': 'http', 'x-request-id': 'rid-1' } },
  { name: 'a client-sent request id is replaced', inbound: { host, 'x-request-id': 'forged' }, identity: null, want: { host, ...set } },
  // Credentials stay at the gateway unless forwardCredential.
  { name: 'the credential in Authorization and a key header are removed', inbound: { host, authorization: 'Bearer pcl_x', 'x-api-key': 'pcl_y' }, want: { host, ...set, ...aliceHeaders } },
  { name: 'an Authorization the gateway did not verify is removed too', inbound: { host, authorization: 'Basic dXNlcjpwdw==', 'x-api-key': 'pcl_y' }, want: { host, ...set, ...aliceHeaders } },
  { name: 'on a public route too', inbound: { host, authorization: 'Bearer pcl_x', 'x-api-key': 'pcl_y' }, identity: null, want: { host, ...set } },
  { name: 'a configured key header is matched in lower case', plan: custom, inbound: { host, 'x-service-key': 'pcl_y', 'x-api-key': 'other' }, identity: null, want: { host, 'x-api-key': 'other', ...set } },
  // forwardCredential: the verified credential only, as verified.
  { name: 'forwardCredential keeps the verified key header', plan: forwarding, ctx: viaKey('pcl_y'), inbound: { host, 'x-api-key': 'pcl_y' }, want: { host, 'x-api-key': 'pcl_y', ...set, ...aliceHeaders } },
  { name: 'forwardCredential keeps the verified Authorization, its scheme as sent', plan: forwarding, ctx: viaAuth('pcl_x'), inbound: { host, authorization: 'bearer pcl_x' }, want: { host, authorization: 'bearer pcl_x', ...set, ...aliceHeaders } },
  { name: 'forwardCredential: the preamble is not forwarded (key header)', plan: forwarding, ctx: viaKey('pcl_y'), inbound: { host, 'x-api-key': 'api.example:443:pcl_revoked:pcl_y' }, want: { host, 'x-api-key': 'pcl_y', ...set, ...aliceHeaders } },
  { name: 'forwardCredential: the preamble is not forwarded (Authorization)', plan: forwarding, ctx: viaAuth('pcl_x'), inbound: { host, authorization: 'Bearer pcl_revoked:pcl_x' }, want: { host, authorization: 'Bearer pcl_x', ...set, ...aliceHeaders } },
  { name: 'forwardCredential: an Authorization of another scheme beside a verified key is dropped', plan: forwarding, ctx: viaKey('pcl_y'), inbound: { host, authorization: 'Basic b3BzOmh1bnRlcjI=', 'x-api-key': 'pcl_y' }, want: { host, 'x-api-key': 'pcl_y', ...set, ...aliceHeaders } },
  { name: 'forwardCredential: a key verified from the query: no credential header goes', plan: forwarding, ctx: { ...ctx, verified: { kind: 'apiKey', value: 'pcl_q', source: 'query:api_key' } }, inbound: { host, authorization: 'Digest x', 'x-api-key': 'pcl_y' }, want: { host, ...set, ...aliceHeaders } },
  { name: 'forwardCredential on a public route: nothing was verified, nothing goes', plan: forwarding, identity: null, ctx: { ...ctx, verified: null }, inbound: { host, authorization: 'Bearer pcl_x', 'x-api-key': 'pcl_y' }, want: { host, ...set } },
  { name: 'forwardCredential does not open the namespace', plan: forwarding, inbound: { host, 'x-auth-role': 'admin' }, want: { host, ...set, ...aliceHeaders } },
];

t.test('upstreamHeaders: what the upstream receives', async (t) => {
  for (const c of cases) {
    const out = upstreamHeaders(c.inbound, c.plan ?? defaults, c.identity === undefined ? alice : c.identity, c.ctx ?? ctx);
    t.same(out, c.want, c.name);
  }
});

t.test('upstreamHeaders does not change the inbound headers', async (t) => {
  const inbound = { host, 'x-auth-subject': 'root', connection: 'x-a', 'x-a': '1' };
  const copy = structuredClone(inbound);
  upstreamHeaders(inbound, defaults, alice, ctx);
  t.same(inbound, copy);
});

t.test('isOwnedHeader: configured names, the assertion header, namespace prefixes', async (t) => {
  const rows: [typeof defaults, string, boolean][] = [
    [defaults, 'x-auth-subject', true],
    [defaults, 'x-auth-assertion', true],
    [defaults, 'x-auth-', true],
    [defaults, 'x-auth', false],
    [defaults, 'x-user', false],
    [custom, 'x-user', true],
    [custom, 'x-user-role', true],
    [custom, 'x-user-other', false],
    [custom, 'x-identity-jwt', true],
    [custom, 'x-internal-anything', true],
    [custom, 'x-auth-subject', true],
    [custom, 'authorization', false],
  ];
  for (const [p, name, owned] of rows) t.equal(isOwnedHeader(p, name), owned, `${p === custom ? 'custom' : 'default'}: ${name}`);
});

t.test('forwardPlan: credential headers are lower-cased, the assertion header is owned', async (t) => {
  t.same([...custom.credentialHeaders].sort(), ['authorization', 'x-service-key']);
  t.same([...custom.owned].sort(), ['x-identity-jwt', 'x-user', 'x-user-key', 'x-user-method', 'x-user-role', 'x-user-scopes']);
  t.same(custom.prefixes, ['x-auth-', 'x-internal-']);
  t.equal(defaults.forwardCredential, false);
  t.equal(forwarding.forwardCredential, true);
});
