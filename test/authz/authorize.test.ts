import t from 'tap';
import type { Identity } from '../../src/authn/types.js';
import { authorize, denialReason } from '../../src/authz/authorize.js';
import { parseConfig } from '../../src/config/load.js';
import { GatewayError } from '../../src/http/problem.js';
import { compileAllowIp } from '../../src/util/cidr.js';

// Routes compiled by the config loader, as the gateway compiles them.
const { config } = parseConfig(
  `upstreams:
  api: { url: "http://127.0.0.1:3000" }
roles: [basic, premium, admin]
routes:
  - { name: open, match: { path: "/open/**" }, upstream: api }
  - { name: premium, match: { path: "/premium/**" }, minRole: premium, upstream: api }
  - { name: reviews, match: { path: "/reviews/**" }, minRole: premium, scopes: ["reviews:write", "reviews:read"], upstream: api }
  - { name: partner, match: { path: "/partner/**" }, audience: [partner-a, partner-b], upstream: api }
  - { name: single, match: { path: "/single/**" }, audience: partner-a, upstream: api }
`,
  'gw.yaml',
  {},
);
const route = (name: string) => config.compiledRoutes.find((r) => r.label === name)!;

function identity(p: Partial<Identity> & { role?: string } = {}): Identity {
  const role = p.role ?? 'basic';
  const scopes = p.scopes ?? [];
  return {
    method: 'apiKey',
    subject: 'alice',
    roleRank: config.roleRanks.get(role) ?? -1,
    scopesHeader: scopes.join(' '),
    audiences: [],
    issuedAt: 0,
    revocationId: 'key:k1',
    ...p,
    role,
    scopes,
  };
}

const ROLE_PREMIUM = 'This route requires the role "premium" or higher.';
const SCOPE_WRITE = 'This route requires the scope "reviews:write".';
const SCOPE_READ = 'This route requires the scope "reviews:read".';
const AUDIENCE_PARTNER = 'This route admits only the audience "partner-a", "partner-b".';
const KEY_AUDIENCE = 'This key is restricted to routes of its audience.';
const ADDRESS = 'This credential may not be used from this address.';
const tenNet = compileAllowIp(['10.0.0.0/8', '2001:db8::/32']);

const cases: { name: string; route: string; id: Identity; ip?: string; want: string | null }[] = [
  // Roles: ascending rank, a route without minRole admits any authenticated identity.
  { name: 'basic on a route without minRole', route: 'open', id: identity(), want: null },
  { name: 'a role the config does not list, on a route without minRole', route: 'open', id: identity({ role: 'root' }), want: null },
  { name: 'a role the config does not list ranks below every role', route: 'premium', id: identity({ role: 'root' }), want: ROLE_PREMIUM },
  { name: 'role name in another case is another role', route: 'premium', id: identity({ role: 'Premium' }), want: ROLE_PREMIUM },
  { name: 'basic below premium', route: 'premium', id: identity({ role: 'basic' }), want: ROLE_PREMIUM },
  { name: 'premium meets premium', route: 'premium', id: identity({ role: 'premium' }), want: null },
  { name: 'admin includes premium', route: 'premium', id: identity({ role: 'admin' }), want: null },
  { name: 'a forged rank is what counts, not the name', route: 'premium', id: { ...identity({ role: 'admin' }), roleRank: 0 }, want: ROLE_PREMIUM },
  // Scopes: every route scope, exactly as written.
  { name: 'every scope present', route: 'reviews', id: identity({ role: 'premium', scopes: ['reviews:read', 'reviews:write'] }), want: null },
  { name: 'extra scopes do not hurt', route: 'reviews', id: identity({ role: 'admin', scopes: ['x', 'reviews:write', 'reviews:read', 'y'] }), want: null },
  { name: 'one scope missing', route: 'reviews', id: identity({ role: 'premium', scopes: ['reviews:write'] }), want: SCOPE_READ },
  { name: 'no scopes', route: 'reviews', id: identity({ role: 'premium' }), want: SCOPE_WRITE },
  { name: 'scope in another case', route: 'reviews', id: identity({ role: 'premium', scopes: ['Reviews:Write', 'reviews:read'] }), want: SCOPE_WRITE },
  { name: 'a scope that only starts like the required one', route: 'reviews', id: identity({ role: 'premium', scopes: ['reviews:write-all', 'reviews:read'] }), want: SCOPE_WRITE },
  { name: 'a prefix of the required scope', route: 'reviews', id: identity({ role: 'premium', scopes: ['reviews', 'reviews:read'] }), want: SCOPE_WRITE },
  { name: 'all scopes in one space-joined string are one scope', route: 'reviews', id: identity({ role: 'premium', scopes: ['reviews:write reviews:read'] }), want: SCOPE_WRITE },
  { name: 'the role is checked before the scopes', route: 'reviews', id: identity({ role: 'basic', scopes: ['reviews:write', 'reviews:read'] }), want: ROLE_PREMIUM },
  // Audiences: a route's audience admits keys and tokens of that audience only; a key with
  // audiences is admitted only where one of them is declared. Tokens' `aud` restricts nothing.
  { name: 'key of one listed audience', route: 'partner', id: identity({ audiences: ['partner-a'] }), want: null },
  { name: 'JWT whose aud includes a listed audience', route: 'partner', id: identity({ method: 'jwt', audiences: ['other', 'partner-b'] }), want: null },
  { name: 'a single-string route audience', route: 'single', id: identity({ audiences: ['partner-a'] }), want: null },
  { name: 'key of another audience', route: 'partner', id: identity({ audiences: ['partner-c'] }), want: AUDIENCE_PARTNER },
  { name: 'JWT of another audience', route: 'partner', id: identity({ method: 'jwt', audiences: ['partner-c'] }), want: AUDIENCE_PARTNER },
  { name: 'no audience at all on an audience route', route: 'partner', id: identity(), want: AUDIENCE_PARTNER },
  { name: 'audience in another case', route: 'partner', id: identity({ audiences: ['Partner-A'] }), want: AUDIENCE_PARTNER },
  { name: 'audience that only contains a listed one', route: 'partner', id: identity({ audiences: ['partner-a,partner-c'] }), want: AUDIENCE_PARTNER },
  { name: 'audience key on a route that declares none', route: 'open', id: identity({ audiences: ['partner-a'] }), want: KEY_AUDIENCE },
  { name: 'JWT with aud on a route that declares none', route: 'open', id: identity({ method: 'jwt', audiences: ['partner-a'] }), want: null },
  // Client address: a key's allowed IPs.
  { name: 'address inside the allowed network', route: 'open', id: identity({ allowIp: tenNet }), ip: '10.1.2.3', want: null },
  { name: 'IPv4-mapped IPv6 form of an allowed address', route: 'open', id: identity({ allowIp: tenNet }), ip: '::ffff:10.1.2.3', want: null },
  { name: 'IPv6 inside the allowed network', route: 'open', id: identity({ allowIp: tenNet }), ip: '2001:db8::1', want: null },
  { name: 'address outside', route: 'open', id: identity({ allowIp: tenNet }), ip: '192.168.1.1', want: ADDRESS },
  { name: 'mapped address outside', route: 'open', id: identity({ allowIp: tenNet }), ip: '::ffff:192.168.1.1', want: ADDRESS },
  { name: 'empty address', route: 'open', id: identity({ allowIp: tenNet }), ip: '', want: ADDRESS },
  { name: 'a list of addresses as one string', route: 'open', id: identity({ allowIp: tenNet }), ip: '10.1.2.3, 192.168.1.1', want: ADDRESS },
  { name: 'an address with a port', route: 'open', id: identity({ allowIp: tenNet }), ip: '10.1.2.3:80', want: ADDRESS },
  { name: 'a host name', route: 'open', id: identity({ allowIp: tenNet }), ip: 'localhost', want: ADDRESS },
  { name: 'no restriction: any address', route: 'open', id: identity(), ip: 'not an address', want: null },
  { name: 'role, then scope, then audience, then address', route: 'premium', id: identity({ allowIp: tenNet }), ip: '192.168.1.1', want: ROLE_PREMIUM },
];

t.test('denialReason: the first reason an identity may not use a route', async (t) => {
  for (const c of cases) t.equal(denialReason(route(c.route), c.id, c.ip ?? '10.0.0.1'), c.want, c.name);
});

t.test('authorize: 403 authorisation-required with that reason, nothing when admitted', async (t) => {
  for (const c of cases) {
    const call = () => authorize(route(c.route), c.id, c.ip ?? '10.0.0.1');
    if (c.want === null) {
      t.doesNotThrow(call, c.name);
      continue;
    }
    try {
      call();
      t.fail(`${c.name}: admitted`);
    } catch (err) {
      t.ok(err instanceof GatewayError, c.name);
      t.match(err, { code: 'authorisation-required', status: 403, message: c.want }, c.name);
    }
  }
});
