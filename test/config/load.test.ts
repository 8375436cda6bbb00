import t from 'tap';
import { ConfigError, parseConfig, loadConfigFile, roleRank } from '../../src/config/load.js';
import { interpolate } from '../../src/config/interpolate.js';

const base = `upstreams:
  api: { url: "http://127.0.0.1:3000" }
routes:
  - match: { path: "/**" }
    upstream: api
`;

function problems(text: string, env: Record<string, string> = {}): readonly string[] {
  try {
    parseConfig(text, 'gw.yaml', env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

t.test('the shipped config is valid', async (t) => {
  const { config, warnings } = await loadConfigFile('gateway.config.yaml', {});
  t.same(warnings, []);
  t.equal(config.routes.length, 4);
  t.equal(config.store.url, 'sqlite://./data/portcullis.db');
  t.ok(Object.isFrozen(config) && Object.isFrozen(config.routes[0]) && Object.isFrozen(config.routes[0]!.match), 'deep-frozen');
  t.equal(roleRank(config, 'admin'), 2);
  t.equal(roleRank(config, 'nobody'), -1);
});

t.test('defaults fill a minimal config', async (t) => {
  const { config } = parseConfig(base, 'gw.yaml', {});
  t.equal(config.listen.port, 8080);
  t.equal(config.apiKeys.defaultTtl, 720 * 3600_000);
  t.equal(config.jwt.clockTolerance, 30_000);
  t.same(config.routes[0]!.auth, ['jwt', 'apiKey']);
  t.equal(config.revocation.onError, 'deny');
});

// Each case: config text, env, and a pattern every reported problem line must include.
const bad: Array<[string, string, Record<string, string>, RegExp]> = [
  ['unknown top-level key', base + 'bogus: 1\n', {}, /^gw\.yaml:6:1 unknown key "bogus"/],
  ['unknown nested key', base.replace('upstream: api', 'upstream: api\n    minrole: admin'), {}, /^gw\.yaml:6:5 unknown key "minrole"/],
  ['bad duration', base + 'jwt: { clockTolerance: 30 seconds }\n', {}, /^gw\.yaml:6:24 jwt\.clockTolerance: expected a duration/],
  ['yaml syntax', 'upstreams: [\n', {}, /^gw\.yaml:\d+:\d+ /],
  ['duplicate key', base + 'roles: [a]\nroles: [b]\n', {}, /^gw\.yaml:7:1 .*[Uu]nique|^gw\.yaml:7:1 /],
  ['unset env var', base.replace('http://127.0.0.1:3000', '${UP_URL}'), {}, /^gw\.yaml:2:15 environment variable UP_URL is not set/],
  ['unknown upstream', base.replace('upstream: api', 'upstream: nope'), {}, /^gw\.yaml:5:15 routes\.0\.upstream: no upstream named "nope"/],
  ['minRole not in roles', base.replace('upstream: api', 'upstream: api\n    minRole: root'), {}, /routes\.0\.minRole: "root" is not in roles/],
  ['short HMAC secret', base + 'jwt: { issuers: [{ name: a, issuer: x, algorithms: [HS256], secret: short }] }\n', {}, /secret must be at least 32 bytes/],
  ['HS with public key', base + 'jwt: { issuers: [{ name: a, issuer: x, algorithms: [HS256], publicKey: "-----BEGIN" }] }\n', {}, /HS\* algorithms need a secret/],
  ['alg none', base + 'jwt: { issuers: [{ name: a, issuer: x, algorithms: [none], jwksUri: "https://x/jwks" }] }\n', {}, /algorithms\.0/],
  ['public with minRole', base.replace('upstream: api', 'upstream: api\n    public: true\n    minRole: basic'), {}, /a public route cannot also require/],
  ['** not last', base.replace('"/**"', '"/a/**/b"'), {}, /\*\* may only be the last segment/],
  ['no routes', 'upstreams: { api: { url: "http://x" } }\nroutes: []\n', {}, /routes: Too small|routes:/],
  ['bad upstream url', base.replace('http://127.0.0.1:3000', 'ftp://x'), {}, /upstreams\.api\.url: expected an http/],
  ['bad CIDR', base + 'trustedProxies: [not-an-ip]\n', {}, /trustedProxies\.0: expected an IP address or CIDR/],
  ['a key lifetime past 100 years', base + 'apiKeys: { defaultTtl: 100000000d }\n', {}, /^gw\.yaml:6:\d+ apiKeys\.defaultTtl: at most 36500d \(100 years\)/],
  ['a refresh token lifetime past 100 years', base + 'apiKeys: { refresh: { tokenTtl: 36501d } }\n', {}, /apiKeys\.refresh\.tokenTtl: at most 36500d/],
  ['short admin token', base + 'admin: { token: "a" }\n', {}, /^gw\.yaml:6:\d+ admin\.token: an admin token must be at least 16 characters/],
  ['short admin token from the environment', base + 'admin: { token: "${ADMIN_TOKEN}" }\n', { ADMIN_TOKEN: 'hunter2' }, /admin\.token: an admin token must be at least 16 characters/],
  ['pattern not normalized', base.replace('"/**"', '"/a/%61/../b"'), {}, /routes\.0\.match\.path: write the pattern as requests are matched: "\/a\/b"/],
  ['old embedded store URL', base + 'store: { url: "pglite://./data/portcullis" }\n', {}, /^gw\.yaml:6:15 store\.url: pglite:\/\/ is no longer supported.*write sqlite:\/\/\.\/data\/portcullis\/portcullis\.db/],
  ['old embedded store URL from the environment', base + 'store: { url: "${DATABASE_URL:-x}" }\n', { DATABASE_URL: 'pglite://memory' }, /^gw\.yaml:6:15 store\.url: .*write sqlite:\/\/memory/],
  ['unknown store scheme', base + 'store: { url: "mysql://h/db" }\n', {}, /^gw\.yaml:6:15 store\.url: unsupported store URL scheme "mysql:": use postgres:\/\/…, sqlite:\/\/FILE/],
  ['pattern with encoded slash', base.replace('"/**"', '"/a%2Fb"'), {}, /routes\.0\.match\.path: not a valid path/],
  ['rate-limited delay too long', base + 'apiKeys: { failedAttempts: { delay: 11s } }\n', {}, /^gw\.yaml:6:37 apiKeys\.failedAttempts\.delay: at most 10s/],
  ['clock tolerance above 5m', base + 'jwt: { clockTolerance: 10m }\n', {}, /^gw\.yaml:6:24 jwt\.clockTolerance: at most 5m/],
  ['external keys without Redis', base + 'revocation: { externalKeys: ["{token}"] }\n', {}, /^gw\.yaml:6:29 revocation\.externalKeys: needs revocation\.redis/],
  ['external keys with Redis from an unset variable', base + 'revocation: { redis: "${R:-}", externalKeys: ["{token}"] }\n', {}, /^gw\.yaml:6:\d+ revocation\.externalKeys: needs revocation\.redis/],
  ['external key with an unknown placeholder', base + 'revocation: { redis: "redis://x", externalKeys: ["{token}", "user:{user_id}"] }\n', {}, /^gw\.yaml:6:\d+ revocation\.externalKeys\.1: a Redis key template/],
  ['external key without a placeholder', base + 'revocation: { redis: "redis://x", externalKeys: ["revoked"] }\n', {}, /revocation\.externalKeys\.0: a template without a placeholder/],
  ['bad method case', base.replace('path: "/**"', 'path: "/**", methods: [get]'), {}, /methods are upper-case/],
];
for (const [name, text, env, want] of bad) {
  t.test(`invalid: ${name}`, async (t) => {
    const p = problems(text, env);
    t.ok(p.length > 0, 'reported');
    t.match(p[0], want, p.join('\n'));
  });
}

t.test('clock tolerance up to 5m and external keys with Redis are accepted', async (t) => {
  const { config } = parseConfig(base + 'jwt: { clockTolerance: 5m }\nrevocation: { redis: "redis://127.0.0.1:6379", externalKeys: ["{token}", "jwt:{jti}", "u:{sub}:{sha256}"] }\n', 'gw.yaml', {});
  t.equal(config.jwt.clockTolerance, 300_000);
  t.same(config.revocation.externalKeys, ['{token}', 'jwt:{jti}', 'u:{sub}:{sha256}']);
});

t.test('interpolation', async (t) => {
  const env = { A: 'x', EMPTY: '' };
  const cases: Array<[string, string | { missing: string }]> = [
    ['plain', 'plain'], ['${A}', 'x'], ['pre-${A}-post', 'pre-x-post'], ['${B:-dflt}', 'dflt'], ['${EMPTY:-d}', 'd'],
    ['${EMPTY}', ''], ['${B:-}', ''], ['$${A}', '${A}'], ['${B}', { missing: 'B' }], ['${A}${B}', { missing: 'B' }],
  ];
  for (const [input, want] of cases) {
    const r = interpolate(input, env);
    if (typeof want === 'string') t.same(r, { ok: true, value: want }, input);
    else t.same(r, { ok: false, missing: want.missing }, input);
  }
  const { config } = parseConfig(base.replace('http://127.0.0.1:3000', '${UP:-http://127.0.0.1:4000}'), 'gw.yaml', {});
  t.equal(config.upstreams.api!.url, 'http://127.0.0.1:4000');
});

t.test('shadowed routes are warnings with positions', async (t) => {
  const text = `upstreams: { api: { url: "http://x" } }
routes:
  - match: { path: "/a/**" }
    upstream: api
  - match: { path: "/a/b", methods: [GET] }
    upstream: api
  - match: { path: "/*/c" }
    upstream: api
`;
  const { warnings } = parseConfig(text, 'gw.yaml', {});
  t.equal(warnings.length, 1);
  t.match(warnings[0], /^gw\.yaml:5:12 warning: route 1 \(\/a\/b\) can never match: route 0/);
});

t.test('workers: a number or auto; several need a store every process can open', async (t) => {
  const base = (extra: string, store = 'sqlite://./data/portcullis.db') => `
store: { url: "${store}" }
upstreams: { api: { url: "http://127.0.0.1:9" } }
${extra}
routes:
  - match: { path: "/**" }
    public: true
    upstream: api
`;
  t.equal(parseConfig(base(''), 'g.yaml').config.workers, 1, 'default 1');
  t.equal(parseConfig(base('workers: auto'), 'g.yaml').config.workers, 'auto');
  t.equal(parseConfig(base('workers: 4', 'postgres://h/db'), 'g.yaml').config.workers, 4);
  const problems = (yaml: string): readonly string[] => {
    try {
      parseConfig(yaml, 'g.yaml');
      return [];
    } catch (err) {
      if (err instanceof ConfigError) return err.problems;
      throw err;
    }
  };
  for (const bad of ['workers: 0', 'workers: 1.5', 'workers: "4"', 'workers: many', 'workers: 257']) {
    t.match(problems(base(bad)), [/^g\.yaml:4:\d+ workers: /], bad);
  }
  t.match(problems(base('workers: 2', 'sqlite://memory')), [/^g\.yaml:4:10 workers: several workers need a store they can all open/]);
  t.doesNotThrow(() => parseConfig(base('workers: 1', 'sqlite://memory'), 'g.yaml'));
});
