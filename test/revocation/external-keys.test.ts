import t from 'tap';
import fc from 'fast-check';
import { parseConfig } from '../../src/config/load.js';
import { GatewayError } from '../../src/http/problem.js';
import { startPortcullis } from '../../src/gateway.js';
import { memoryLogger } from '../helpers/gateway.js';
import { tempDatabase } from '../helpers/services.js';
import { compileExternalKeys, type ExternalKeyValues } from '../../src/revocation/external-keys.js';
import { RedisRevocationStore } from '../../src/revocation/redis.js';
import { CI, parseInfo, PrivateRedis, recordingLogger, serviceAvailable, sleep } from './helpers.js';

// `revocation.externalKeys`: the keys a fronted API writes into Redis itself to revoke a
// token, rendered once per token and read in the same MGET as the gateway's own markers.

const TOKEN = 'eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln';
const values = (extra: Partial<ExternalKeyValues> = {}): ExternalKeyValues => ({ token: TOKEN, sha256: 'ab'.repeat(32), jti: undefined, sub: undefined, ...extra });

t.test('templates render per token; a template needing a claim the token lacks is skipped', async (t) => {
  const cases: Array<[string, readonly string[], ExternalKeyValues, readonly string[] | undefined]> = [
    ['the raw token', ['{token}'], values(), [TOKEN]],
    ['prefix and suffix kept', ['blacklist:{token}:v1'], values(), [`blacklist:${TOKEN}:v1`]],
    ['digest', ['revoked:{sha256}'], values(), [`revoked:${'ab'.repeat(32)}`]],
    ['jti present', ['jti:{jti}'], values({ jti: 'j-1' }), ['jti:j-1']],
    ['jti absent: skipped', ['jti:{jti}'], values(), undefined],
    ['jti empty: skipped', ['jti:{jti}'], values({ jti: '' }), undefined],
    ['sub absent skips only its template', ['{token}', 'user:{sub}:logout'], values(), [TOKEN]],
    ['several placeholders in one key', ['{sub}/{jti}'], values({ sub: 'u', jti: 'j' }), ['u/j']],
    ['one missing of two: skipped', ['{sub}/{jti}'], values({ sub: 'u' }), undefined],
    ['every template', ['{token}', 'x:{sha256}', 'j:{jti}', 's:{sub}'], values({ jti: '7', sub: 'a' }), [TOKEN, `x:${'ab'.repeat(32)}`, 'j:7', 's:a']],
  ];
  for (const [name, templates, v, want] of cases) t.same(compileExternalKeys(templates)!(v), want, name);
  t.equal(compileExternalKeys([]), undefined, 'no templates: nothing to render');
});

t.test('property: a key is its template with each placeholder replaced; any missing value skips it', async () => {
  const names = ['token', 'jti', 'sub', 'sha256'] as const;
  const literal = fc.string({ maxLength: 6 }).filter((s) => !/[{}]/.test(s));
  const template = fc.array(fc.oneof(literal.map((text) => ({ text })), fc.constantFrom(...names).map((name) => ({ name }))), { minLength: 1, maxLength: 6 })
    .filter((parts) => parts.some((p) => 'name' in p));
  const value = fc.option(fc.string({ minLength: 1, maxLength: 8 }), { nil: undefined });
  fc.assert(
    fc.property(fc.array(template, { minLength: 1, maxLength: 3 }), fc.string({ minLength: 1 }), value, value, (templates, token, jti, sub) => {
      const v: ExternalKeyValues = { token, sha256: 'f'.repeat(64), jti, sub };
      const source = templates.map((parts) => parts.map((p) => ('text' in p ? p.text : `{${p.name}}`)).join(''));
      const want = templates
        .filter((parts) => parts.every((p) => 'text' in p || v[p.name] !== undefined))
        .map((parts) => parts.map((p) => ('text' in p ? p.text : v[p.name]!)).join(''));
      const got = compileExternalKeys(source)!(v);
      return JSON.stringify(got ?? []) === JSON.stringify(want);
    }),
  );
});

const missing = await serviceAvailable('redis');
if (missing !== undefined) {
  if (CI) t.fail(missing);
  else t.test('external keys in Redis', { skip: missing }, async () => {});
} else {
  // A private server: its command counters see only these checks, and it can be killed.
  const server = await PrivateRedis.start();
  t.teardown(() => server.kill());
  const render = compileExternalKeys(['{token}', 'jti:{jti}'])!;
  const ref = (token: string, jti?: string) => ({
    revocationId: `tok:${token}`,
    subject: 't:alice',
    issuedAt: Date.now(),
    externalRevocationKeys: render(values({ token, jti })),
  });

  await t.test('a key the API wrote revokes the token; checks share one MGET with the markers', async (t) => {
    const s = new RedisRevocationStore({ url: server.url, logger: recordingLogger(), expiryGraceMs: 0 });
    t.teardown(() => s.close());
    t.ok(await s.waitReady(3_000));
    await server.admin((r) => r.set('logged-out-token', '1'));
    await server.admin((r) => r.set('jti:j-9', '1'));
    await s.revoke('tok:gateway-revoked', Date.now() + 60_000);
    const refs = [ref('fresh'), ref('logged-out-token'), ref('other', 'j-9'), ref('gateway-revoked'), ref('fresh-2', 'j-8'), { revocationId: 'tok:plain', subject: 't:bob', issuedAt: 0 }];
    await Promise.all(refs.map((r) => s.isRevoked(r)));
    const stats = async () => parseInfo(await server.admin((r) => r.info('commandstats')));
    const calls = (m: Map<string, string>, cmd: string) => Number(/calls=(\d+)/.exec(m.get(`cmdstat_${cmd}`) ?? 'calls=0')![1]);
    const before = await stats();
    const answers = await Promise.all(refs.map((r) => s.isRevoked(r)));
    const after = await stats();
    t.same(answers, [false, true, true, true, false, false], 'revoked by the API\'s key (raw token, jti), by the gateway\'s marker, or not at all');
    t.equal(calls(after, 'mget') - calls(before, 'mget'), 1, 'one MGET for every check of the turn, external keys included');
    for (const cmd of ['get', 'exists']) t.equal(calls(after, cmd) - calls(before, cmd), 0, `no ${cmd.toUpperCase()} of their own`);
    await server.admin((r) => r.del('logged-out-token'));
    t.equal(await s.isRevoked(refs[1]!), false, 'the API deleting its key un-revokes, as it does for the API itself');
  });

  await t.test('Redis away: onError decides for external keys too', async (t) => {
    const deny = new RedisRevocationStore({ url: server.url, logger: recordingLogger(), expiryGraceMs: 0, onError: 'deny', timeout: 300, maxBackoffMs: 200 });
    const allow = new RedisRevocationStore({ url: server.url, logger: recordingLogger(), expiryGraceMs: 0, onError: 'allow', timeout: 300, maxBackoffMs: 200 });
    t.teardown(() => deny.close());
    t.teardown(() => allow.close());
    t.ok(await deny.waitReady(3_000) && await allow.waitReady(3_000));
    await server.admin((r) => r.set('out-token', '1'));
    t.equal(await deny.isRevoked(ref('out-token')), true);
    t.equal(await allow.isRevoked(ref('out-token')), true);

    server.pause();
    const hung = await Promise.allSettled([deny.isRevoked(ref('out-token')), allow.isRevoked(ref('out-token'))]);
    t.ok(hung[0].status === 'rejected' && hung[0].reason instanceof GatewayError && hung[0].reason.code === 'revocation-unavailable', 'hung Redis, deny: 503 revocation-unavailable');
    t.same(hung[1], { status: 'fulfilled', value: false }, 'hung Redis, allow: served as not revoked');
    server.resume();

    await server.kill();
    await sleep(100);
    const dead = await Promise.allSettled([deny.isRevoked(ref('out-token')), allow.isRevoked(ref('out-token'))]);
    t.ok(dead[0].status === 'rejected' && (dead[0].reason as GatewayError).code === 'revocation-unavailable', 'dead Redis, deny: refused');
    t.same(dead[1], { status: 'fulfilled', value: false }, 'dead Redis, allow: served');

    await server.restart();
    t.ok(await deny.waitReady(5_000), 'reconnects without a restart');
    await allow.waitReady(5_000);
    await server.admin((r) => r.set('out-token', '1'));
    t.equal(await deny.isRevoked(ref('out-token')), true, 'the API\'s key is honoured again once Redis is back');
  });

  await t.test('a reload cannot add external keys to a gateway running without Redis', async (t) => {
    const db = await tempDatabase();
    t.teardown(() => db.drop());
    const yaml = (revocation: string) => `
upstreams: { api: { url: "http://127.0.0.1:9" } }
store: { url: "${db.url}", poolSize: 2 }
revocation: ${revocation}
log: { level: silent }
jwt: { issuers: [{ name: t, issuer: x, algorithms: [HS256], secret: "reload-secret-that-is-long-enough-0123" }] }
routes: [{ match: { path: "/**" }, upstream: api }]
`;
    const { logger } = memoryLogger('warn');
    const p = await startPortcullis(parseConfig(yaml('{ redis: "" }'), 'a.yaml', {}), { logger, listen: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 } });
    t.teardown(() => p.close(100));
    const next = parseConfig(yaml(`{ redis: "${server.url}", externalKeys: ["{token}"] }`), 'b.yaml', {});
    await t.rejects(p.reload(next), /revocation\.externalKeys needs Redis/, 'refused: the API\'s revocations would go unread');
    t.same(p.gateway!.config.revocation.externalKeys, [], 'the old config keeps serving');
  });
}
