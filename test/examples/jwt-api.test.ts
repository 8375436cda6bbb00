import t from 'tap';
import { createHmac, randomUUID } from 'node:crypto';
import { request } from 'undici';
import { Redis } from 'ioredis';
import type { GatewayConfig } from '../../src/config/load.js';
import { startRawUpstream, type RawSeen } from '../hardening/raw-upstream.js';
import { startRelay } from '../helpers/relay.js';
import { REDIS_URL, redisPrefix, serviceSkip } from '../helpers/services.js';
import { startExample } from './harness.js';

// examples/jwt-api.yaml in front of the JWT tutorial API as it is: its tokens built exactly
// as its auth/core.py builds them (PyJWT, HS256, the secrets of config/v1/app_config.py taken
// as text), its logout writing the raw token into Redis, a raw upstream recording every byte.

// config/v1/app_config.py
const JWT_ISSUER = 'fathat.org';
const JWT_SECRET = '0f8014e60a33413b8f1ef6c414a5ed86';
const JWT_REFRESH_SECRET = '0f8014e60a33413b8f1ef6c414a7ab21';
const JWT_EMAIL_SECRET = '0h1014e60a33313b8f1ef6c414a5ed19';
const JWT_PASSWORD_SECRET = '0f8014e60a33413b8f1ef6c414a1de15';
const HOURS = { standard_claim: 10, refresh_claim: 24, email_claim: 1, password_claim: 1 } as const;
const SECRET = { standard_claim: JWT_SECRET, refresh_claim: JWT_REFRESH_SECRET, email_claim: JWT_EMAIL_SECRET, password_claim: JWT_PASSWORD_SECRET } as const;
type Kind = keyof typeof HOURS;

/** PyJWT's `jwt.encode(payload, secret, algorithm='HS256')`: compact JSON, the secret's UTF-8 bytes. */
function pyjwtEncode(payload: Record<string, unknown>, secret: string | Buffer): string {
  const part = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const input = `${part({ typ: 'JWT', alg: 'HS256' })}.${part(payload)}`;
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
}

/**
 * auth/core.py `generate_jwt`/`gen_token`: the kind's claim, then iss, exp (utcnow + hours),
 * iat, sub (str(uuid4())), access_role, user_id; datetimes become whole seconds; signed with
 * the secret `select_secret` picks for the kind.
 */
function generateJwt(kind: Kind, accessRole: string, userId: number, opts: { hours?: number; secret?: string; iss?: string } = {}): string {
  const now = Math.floor(Date.now() / 1000);
  const payload = {
    [kind]: true,
    iss: opts.iss ?? JWT_ISSUER,
    exp: now + (opts.hours ?? HOURS[kind]) * 3600,
    iat: now,
    sub: randomUUID(),
    access_role: accessRole,
    user_id: userId,
  };
  return pyjwtEncode(payload, opts.secret ?? SECRET[kind]);
}

// The example token printed in the tutorial (line breaks removed), issued 2022-01-11.
const SEED_TOKEN =
  'eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJmYXRoYXQub3JnIiwiZXhwIjoxNjQxOTE1MTU2LCJpYXQiOjE2NDE4NzkxNTYsInN1YiI6IjUzMDA5YTBiLTdhMjItNGZhMS1iYWExLWU4MWUyNjFhZGE2ZSIsImFjY2Vzc19yb2xlIjoiYmFzaWMiLCJ1c2VyX2lkIjoxMywic3RhbmRhcmRfY2xhaW0iOnRydWV9.A8Fg069Rv2wgNbsjbwMiaDLESWDlGxkevoBxThLbkeA';

t.test('the token builder is the tutorial\'s: it reproduces its example token byte for byte', async (t) => {
  const claims = JSON.parse(Buffer.from(SEED_TOKEN.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
  t.same(Object.keys(claims), ['iss', 'exp', 'iat', 'sub', 'access_role', 'user_id', 'standard_claim']);
  t.equal(typeof claims.user_id, 'number', 'user_id is an integer');
  t.equal(pyjwtEncode(claims, JWT_SECRET), SEED_TOKEN, 'same header, same JSON, same signature under JWT_SECRET as text');
  const fresh = JSON.parse(Buffer.from(generateJwt('standard_claim', 'basic', 13).split('.')[1]!, 'base64url').toString()) as Record<string, number>;
  t.equal(fresh.exp! - fresh.iat!, 36_000, 'access tokens live 10 hours');
});

const skip = (await serviceSkip('postgres')) || (await serviceSkip('redis'));
if (skip) t.test('JWT API example', { skip }, async () => {});
else {
  const rp = redisPrefix();
  t.teardown(() => rp.clean());
  const redis = new Redis(REDIS_URL);
  t.teardown(() => redis.quit());
  const apiKeys: string[] = [];
  t.teardown(async () => { if (apiKeys.length) await redis.del(...apiKeys); });

  // The API behind the gateway: answers everything, and its logout endpoint does what
  // `permission(token_info, 'basic', logout=True)` does: SET <token> 1 in its Redis.
  const header = (req: RawSeen, name: string) => req.headerLines.find((l) => l.toLowerCase().startsWith(`${name}:`))?.slice(name.length + 1).trim();
  const raw = await startRawUpstream({
    onRequest: async (req) => {
      if (!req.requestLine.startsWith('POST /users/v1/logout ')) return;
      const token = /^Bearer (.+)$/.exec(header(req, 'authorization') ?? '')?.[1];
      if (token === undefined) return;
      apiKeys.push(token);
      await redis.set(token, 1);
    },
  });
  t.teardown(() => raw.close());
  // Redis through a relay, so the test can take it away from the gateway alone.
  const target = new URL(REDIS_URL);
  const relay = await startRelay({ host: target.hostname, port: Number(target.port || 6379) });
  t.teardown(() => relay.close());

  const ownPrefix = (c: GatewayConfig): GatewayConfig => ({ ...c, revocation: { ...c.revocation, keyPrefix: rp.prefix } });
  const { p, url } = await startExample(t, 'examples/jwt-api.yaml', ({ db }) => ({
    DATABASE_URL: db, UPSTREAM_URL: raw.url, REDIS_URL: `redis://${relay.address}`, JWT_SECRET,
  }), { adjust: ownPrefix });
  t.ok(await p.core.revocation.waitReady(5_000), 'revocation ready');

  const call = async (method: string, path: string, token?: string) => {
    const r = await request(url + path, { method, headers: token ? { authorization: `Bearer ${token}` } : {} });
    const text = await r.body.text();
    return { status: r.statusCode, code: r.statusCode >= 400 ? (JSON.parse(text) as { code?: string }).code : undefined };
  };
  const lastSeen = () => raw.requests.at(-1)!;

  t.test('access tokens as the API mints them', async (t) => {
    const basic = generateJwt('standard_claim', 'basic', 13);
    const admin = generateJwt('standard_claim', 'admin', 1);
    t.same(await call('GET', '/films/v1/', basic), { status: 200, code: undefined });
    const seen = lastSeen();
    t.equal(seen.requestLine, 'GET /films/v1/ HTTP/1.1');
    t.equal(header(seen, 'x-auth-subject'), '13', 'user_id forwarded in decimal');
    t.equal(header(seen, 'x-auth-role'), 'basic');
    t.equal(header(seen, 'authorization'), `Bearer ${basic}`, 'the token reaches the API, which checks it itself');
    t.same(await call('DELETE', '/films/v1/4', basic), { status: 403, code: 'authorisation-required' }, 'basic < admin');
    t.same(await call('DELETE', '/films/v1/4', admin), { status: 200, code: undefined });
    t.same(await call('GET', '/films/v1/', admin), { status: 200, code: undefined }, 'admin includes basic');
    t.same(await call('POST', '/users/v1/login'), { status: 200, code: undefined }, 'login needs no token');
    t.same(await call('GET', '/films/v1/'), { status: 401, code: 'token-missing' });
  });

  t.test('the API\'s other tokens and bad access tokens never reach it', async (t) => {
    const before = raw.requests.length;
    const cases: Array<[string, string, string]> = [
      ['refresh token (JWT_REFRESH_SECRET)', generateJwt('refresh_claim', 'basic', 13), 'token-invalid'],
      ['e-mail token (JWT_EMAIL_SECRET)', generateJwt('email_claim', 'basic', 13), 'token-invalid'],
      ['password token (JWT_PASSWORD_SECRET)', generateJwt('password_claim', 'basic', 13), 'token-invalid'],
      ['e-mail claims under the access secret: no standard_claim', generateJwt('email_claim', 'basic', 13, { secret: JWT_SECRET }), 'token-invalid'],
      ['another issuer', generateJwt('standard_claim', 'basic', 13, { iss: 'example.org' }), 'token-invalid'],
      ['signed with the secret\'s hex bytes, not its text', pyjwtEncode({ standard_claim: true, iss: JWT_ISSUER, exp: 4e9, iat: 1.7e9, sub: randomUUID(), access_role: 'admin', user_id: 1 }, Buffer.from(JWT_SECRET, 'hex')), 'token-invalid'],
      ['expired access token', generateJwt('standard_claim', 'basic', 13, { hours: -1 }), 'token-expired'],
      ['the tutorial\'s own example token, long expired', SEED_TOKEN, 'token-expired'],
    ];
    for (const [what, token, code] of cases) t.same(await call('GET', '/films/v1/', token), { status: 401, code }, what);
    t.equal(raw.requests.length, before, 'the upstream received none of them');
  });

  t.test('the API\'s own logout (SET <token> 1) is honoured by the gateway', async (t) => {
    const token = generateJwt('standard_claim', 'basic', 21);
    t.same(await call('GET', '/films/v1/', token), { status: 200, code: undefined }, 'in use (and cached)');
    t.same(await call('POST', '/users/v1/logout', token), { status: 200, code: undefined }, 'the API\'s logout, through the gateway');
    t.equal(await redis.get(token), '1', 'the API wrote the token into Redis');
    const after = raw.requests.length;
    t.same(await call('GET', '/films/v1/', token), { status: 401, code: 'token-revoked' });
    t.same(await call('POST', '/users/v1/logout', token), { status: 401, code: 'token-revoked' });
    t.equal(raw.requests.length, after, 'nothing reached the upstream after the logout');
    const other = generateJwt('standard_claim', 'basic', 21);
    t.same(await call('GET', '/films/v1/', other), { status: 200, code: undefined }, 'another token of the same user still works');
  });

  t.test('the gateway\'s own logout works too', async (t) => {
    const token = generateJwt('standard_claim', 'basic', 22);
    t.same(await call('GET', '/films/v1/', token), { status: 200, code: undefined });
    const before = raw.requests.length;
    t.same(await call('POST', '/.portcullis/logout', token), { status: 204, code: undefined });
    t.same(await call('GET', '/films/v1/', token), { status: 401, code: 'token-revoked' });
    t.equal(raw.requests.length, before, 'neither the logout nor the refused request was proxied');
  });

  t.test('Redis unreachable: refused as onError: deny says, then back', async (t) => {
    const token = generateJwt('standard_claim', 'basic', 23);
    t.same(await call('GET', '/films/v1/', token), { status: 200, code: undefined });
    const before = raw.requests.length;
    await relay.cut();
    t.same(await call('GET', '/films/v1/', token), { status: 503, code: 'revocation-unavailable' }, 'a valid, cached token is not served unchecked');
    t.equal(raw.requests.length, before, 'nothing proxied while revocations cannot be read');
    await relay.restore();
    t.ok(await p.core.revocation.waitReady(10_000), 'reconnected without a restart');
    t.same(await call('GET', '/films/v1/', token), { status: 200, code: undefined });
  });
}
