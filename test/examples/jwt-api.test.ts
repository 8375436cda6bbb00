import t from 'tap';
import { SignJWT } from 'jose';
import { request } from 'undici';
import { Redis } from 'ioredis';
import { loadConfigFile } from '../../src/config/load.js';
import { startPortcullis } from '../../src/server.js';
import { startUpstream } from '../helpers/upstream.js';
import { memoryLogger } from '../helpers/gateway.js';
import { REDIS_URL, redisPrefix, serviceSkip } from '../helpers/services.js';

// The JWT API of examples/jwt-api.yaml, fronted as it is: HS256 access tokens with user_id,
// access_role and standard_claim; its other tokens refused; logout revokes through Redis.
const skip = await serviceSkip('redis');
if (skip) t.test('JWT API example', { skip }, async () => {});
else {
  const up = await startUpstream();
  t.teardown(() => up.close());
  const SECRET = 'access-secret-that-is-long-enough-0123456789';
  const REFRESH_SECRET = 'refresh-secret-that-is-long-enough-012345678';
  const rp = redisPrefix();
  t.teardown(() => rp.clean());
  const loaded = await loadConfigFile('examples/jwt-api.yaml', { JWT_SECRET_KEY: SECRET, UPSTREAM_URL: up.url, DATABASE_URL: 'sqlite://memory', REDIS_URL });
  // Isolate this run's Redis keys from other test files.
  const config = { ...loaded.config, revocation: { ...loaded.config.revocation, keyPrefix: rp.prefix } };
  const { logger } = memoryLogger();
  const p = await startPortcullis({ config, warnings: [] }, { logger, listen: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 } });
  t.teardown(() => p.close(100));
  await p.services.core.revocation.waitReady(5000);
  const url = p.gateway.url();

  const now = () => Math.floor(Date.now() / 1000);
  const sign = (claims: Record<string, unknown>, secret = SECRET, exp: number | null = now() + 900) => {
    let j = new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setIssuedAt().setJti(crypto.randomUUID());
    if (exp !== null) j = j.setExpirationTime(exp);
    return j.sign(new TextEncoder().encode(secret));
  };
  const get = async (path: string, token?: string, method: 'GET' | 'POST' = 'GET') => {
    const r = await request(url + path, { method, headers: token ? { authorization: `Bearer ${token}` } : {} });
    const text = await r.body.text();
    return { status: r.statusCode, code: text ? (JSON.parse(text) as { code?: string }).code : undefined };
  };

  t.test('access tokens', async (t) => {
    const basic = await sign({ user_id: 42, access_role: 'basic', standard_claim: true });
    const admin = await sign({ user_id: 'root', access_role: 'admin', standard_claim: true });
    t.same(await get('/api/items', basic), { status: 200, code: undefined });
    const h = up.seen.at(-1)!.headers;
    t.equal(h['x-auth-subject'], '42', 'numeric user_id forwarded in decimal');
    t.equal(h['x-auth-role'], 'basic');
    t.equal(h['x-auth-method'], 'jwt');
    t.same(await get('/api/admin/users', basic), { status: 403, code: 'authorisation-required' });
    t.same(await get('/api/admin/users', admin), { status: 200, code: undefined });
    t.same(await get('/api/status'), { status: 200, code: undefined }, 'public status route');
    t.same(await get('/api/items'), { status: 401, code: 'token-missing' });
  });

  t.test('other tokens of the API are refused on normal routes', async (t) => {
    const before = up.seen.length;
    const refresh = await sign({ user_id: 42, access_role: 'basic', standard_claim: true, type: 'refresh' }, REFRESH_SECRET, now() + 86400);
    const email = await sign({ user_id: 42, email: 'a@b.c' });
    const reset = await sign({ user_id: 42, access_role: 'basic', password_reset: true });
    const expired = await sign({ user_id: 42, access_role: 'basic', standard_claim: true }, SECRET, now() - 3600);
    const noExp = await sign({ user_id: 42, access_role: 'basic', standard_claim: true }, SECRET, null);
    t.same(await get('/api/items', refresh), { status: 401, code: 'token-invalid' }, 'refresh token (other secret)');
    t.same(await get('/api/items', email), { status: 401, code: 'token-invalid' }, 'e-mail token (no standard_claim)');
    t.same(await get('/api/items', reset), { status: 401, code: 'token-invalid' }, 'password token (no standard_claim)');
    t.same(await get('/api/items', expired), { status: 401, code: 'token-expired' });
    t.same(await get('/api/items', noExp), { status: 401, code: 'token-invalid' }, 'exp is required');
    t.same(await get('/api/items', 'not-a-token'), { status: 401, code: 'key-invalid' }, 'opaque value on a JWT-only route');
    t.equal(up.seen.length, before, 'none reached the upstream');
  });

  t.test('logout revokes the token in Redis', async (t) => {
    const token = await sign({ user_id: 7, access_role: 'basic', standard_claim: true });
    t.same(await get('/api/items', token), { status: 200, code: undefined }, 'warm in the cache');
    t.same(await get('/.portcullis/logout', token, 'POST'), { status: 204, code: undefined });
    t.same(await get('/api/items', token), { status: 401, code: 'token-revoked' });
    const redis = new Redis(REDIS_URL);
    const markers = await redis.keys(`${rp.prefix}r:jti:*`);
    await redis.quit();
    t.equal(markers.length, 1, 'one revoked-token marker in Redis');
    t.same(await get('/.portcullis/logout', token, 'POST'), { status: 401, code: 'token-revoked' }, 'a revoked token cannot log out again');
  });
}
