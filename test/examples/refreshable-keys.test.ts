import t from 'tap';
import { request } from 'undici';
import { serviceSkip } from '../helpers/services.js';
import { startExample } from './harness.js';

// examples/refreshable-keys.yaml: short-lived keys tied to a user, role, audience and client
// address, with rotating refresh tokens (JSON body or cookie), replay detection that
// revokes the whole family, revoke and revoke-all from the CLI, and logout.

const CONFIG = 'examples/refreshable-keys.yaml';
const MINUTE = 60_000;

interface Created {
  id: string;
  key: string;
  refreshToken: string;
  expiresAt: string;
  refreshExpiresAt: string;
  audiences: string[];
  allowedIps: string[];
  refreshable: boolean;
}

interface Answer {
  status: number;
  code: string | undefined;
  json: Record<string, unknown> | undefined;
  headers: Record<string, string | string[] | undefined>;
}

const skip = await serviceSkip('postgres');
if (skip) t.test('refreshable keys example', { skip }, async () => {});
else {
  const { p, up, url, portcullis } = await startExample(t, CONFIG, ({ db, upstream }) => ({ DATABASE_URL: db, REPORTS_URL: upstream, BILLING_URL: upstream, TRUSTED_PROXIES: '127.0.0.1/32', REDIS_URL: '' }));
  t.ok(await p.core.revocation.waitReady(5_000), 'revocation view ready (LISTEN/NOTIFY)');

  const create = async (...args: string[]): Promise<Created> => {
    const r = await portcullis('keys', 'create', '--refreshable', '--json', ...args);
    if (r.code !== 0) throw new Error(r.err);
    return JSON.parse(r.out) as Created;
  };
  const call = async (method: 'GET' | 'POST', path: string, headers: Record<string, string> = {}, body?: unknown): Promise<Answer> => {
    const r = await request(url + path, {
      method,
      headers: body === undefined ? headers : { ...headers, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await r.body.text();
    const json = text === '' ? undefined : (JSON.parse(text) as Record<string, unknown>);
    return { status: r.statusCode, code: r.statusCode >= 400 ? (json?.code as string | undefined) : undefined, json, headers: r.headers };
  };
  const get = (path: string, key: string, extra: Record<string, string> = {}) => call('GET', path, { authorization: `Bearer ${key}`, ...extra });
  const refresh = (refreshToken: string) => call('POST', '/.portcullis/refresh', {}, { refreshToken });
  const refreshByCookie = (refreshToken: string) => call('POST', '/.portcullis/refresh', { cookie: `portcullis_refresh=${encodeURIComponent(refreshToken)}` });
  /** A revocation made by the CLI (another connection) reaches the gateway through NOTIFY: wait for it, bounded. */
  const refusedSoon = async (key: string): Promise<Answer> => {
    let a = await get('/api/reports', key);
    for (let i = 0; i < 100 && a.status === 200; i++) {
      await new Promise((r) => setTimeout(r, 20));
      a = await get('/api/reports', key);
    }
    return a;
  };
  const status = (a: Answer) => [a.status, a.code];

  t.test('a refreshable key for one user, role, audience and address', async (t) => {
    const before = Date.now();
    const k = await create('--subject', 'u-1001', '--role', 'authenticated', '--audience', 'reports-api', '--allow-ip', '127.0.0.1/32');
    t.match(k.key, /^pcl_/);
    t.match(k.refreshToken, /\S{20,}/, 'a refresh token comes with it');
    t.same([k.refreshable, k.audiences, k.allowedIps], [true, ['reports-api'], ['127.0.0.1/32']]);
    const life = Date.parse(k.expiresAt) - before;
    t.ok(life > 14 * MINUTE && life <= 15 * MINUTE + 5_000, `short-lived: ${Math.round(life / 1000)} s (apiKeys.refresh.keyTtl 15m)`);
    t.ok(Date.parse(k.refreshExpiresAt) - before > 6 * 24 * 60 * MINUTE, 'the refresh token lives 7 days');

    t.same(status(await get('/api/reports', k.key)), [200, undefined], 'works on a route of its audience');
    const h = up.seen.at(-1)!.headers;
    t.same([h['x-auth-subject'], h['x-auth-role'], h['x-auth-key-id'], h['x-auth-method']], ['u-1001', 'authenticated', k.id, 'apiKey']);
    t.equal(h.authorization, undefined, 'the key is not forwarded');
    t.same(status(await get('/billing/invoices', k.key)), [403, 'authorisation-required'], 'refused on a route of another audience');
    t.same(status(await get('/v1/reports', k.key)), [403, 'authorisation-required'], 'refused on a route that declares no audience');
    t.same(status(await get('/api/admin/users', k.key)), [403, 'authorisation-required'], 'refused below its role');
    t.same(status(await get('/api/reports', k.key, { 'x-forwarded-for': '203.0.113.9' })), [403, 'authorisation-required'], 'refused from another client address (behind the trusted proxy)');
    t.same(status(await get('/api/reports', k.key, { 'x-forwarded-for': '127.0.0.1' })), [200, undefined], 'admitted when the proxy forwards its own address');

    // A key bound to an address other than 127.0.0.1 is refused to this client, admitted for that one.
    const elsewhere = await create('--subject', 'u-1001', '--role', 'authenticated', '--audience', 'reports-api', '--allow-ip', '192.0.2.0/24');
    t.same(status(await get('/api/reports', elsewhere.key)), [403, 'authorisation-required'], 'refused from 127.0.0.1');
    t.same(status(await get('/api/reports', elsewhere.key, { 'x-forwarded-for': '192.0.2.44' })), [200, undefined], 'admitted from 192.0.2.44');

    // An unscoped key of the same user is good on /v1 and nowhere scoped.
    const plain = await create('--subject', 'u-1001', '--role', 'authenticated');
    t.same(status(await get('/v1/reports', plain.key)), [200, undefined]);
    t.same(status(await get('/api/reports', plain.key)), [403, 'authorisation-required'], 'a route with an audience wants a key issued for it');
  });

  t.test('refresh rotates the key and the refresh token; a replay revokes the family', async (t) => {
    const k1 = await create('--subject', 'u-1002', '--role', 'authenticated', '--audience', 'reports-api', '--allow-ip', '127.0.0.1/32');
    t.same(status(await get('/api/reports', k1.key)), [200, undefined], 'first key cached');

    const r1 = await refresh(k1.refreshToken);
    t.equal(r1.status, 200, `refresh with the JSON body (${r1.code ?? ''})`);
    const body1 = r1.json as { key: string; id: string; expiresAt: string; refreshToken: string; refreshExpiresAt: string };
    t.same(Object.keys(body1).sort(), ['expiresAt', 'id', 'key', 'refreshExpiresAt', 'refreshToken']);
    t.equal(r1.headers['set-cookie'], undefined, 'no cookie when the token came in the body');
    t.equal(r1.headers['cache-control'], 'no-store');
    t.not(body1.key, k1.key);
    t.not(body1.refreshToken, k1.refreshToken);
    t.same(status(await get('/api/reports', k1.key)), [401, 'key-revoked'], 'the old key stops at once');
    t.same(status(await get('/api/reports', body1.key)), [200, undefined], 'the new key works');
    t.equal(up.seen.at(-1)!.headers['x-auth-key-id'], body1.id);
    t.same(status(await get('/billing/invoices', body1.key)), [403, 'authorisation-required'], 'same audience as before');
    t.same(status(await get('/api/reports', body1.key, { 'x-forwarded-for': '203.0.113.9' })), [403, 'authorisation-required'], 'same address binding as before');

    const r2 = await refreshByCookie(body1.refreshToken);
    t.equal(r2.status, 200, `refresh with the cookie (${r2.code ?? ''})`);
    const body2 = r2.json as { key: string; id: string; refreshToken?: string };
    t.equal(body2.refreshToken, undefined, 'no refresh token in the body');
    const setCookie = String(r2.headers['set-cookie']);
    t.match(setCookie, /^portcullis_refresh=[^;]+;/, 'the new refresh token comes back as the cookie');
    for (const attr of ['HttpOnly', 'Secure', 'SameSite=Strict']) t.match(setCookie, new RegExp(`;\\s*${attr}(;|$)`), attr);
    const cookieToken = decodeURIComponent(/^portcullis_refresh=([^;]+)/.exec(setCookie)![1]!);
    t.same(status(await get('/api/reports', body1.key)), [401, 'key-revoked'], 'the second key stops at once');
    t.same(status(await get('/api/reports', body2.key)), [200, undefined], 'the third key works');

    // Someone replays the first, spent refresh token.
    const replay = await refresh(k1.refreshToken);
    t.same(status(replay), [401, 'refresh-invalid'], 'a spent refresh token is refused');
    t.same(status(await get('/api/reports', body2.key)), [401, 'key-revoked'], 'and the newest key of the family is revoked with it');
    t.same(status(await refreshByCookie(cookieToken)), [401, 'refresh-invalid'], "the family's current refresh token is dead too");
  });

  t.test('revoke one key, revoke every key of a user', async (t) => {
    const k = await create('--subject', 'u-1003', '--role', 'authenticated', '--audience', 'reports-api');
    t.same(status(await get('/api/reports', k.key)), [200, undefined]);
    const r = await portcullis('keys', 'revoke', k.id);
    t.equal(r.code, 0, r.err);
    t.same(status(await refusedSoon(k.key)), [401, 'key-revoked'], 'keys revoke ID stops the key');
    t.same(status(await refresh(k.refreshToken)), [401, 'refresh-invalid'], '... and its refresh token');

    const a = await create('--subject', 'u-1004', '--role', 'authenticated', '--audience', 'reports-api');
    const b = await create('--subject', 'u-1004', '--role', 'staff', '--audience', 'reports-api');
    const a2 = (await refresh(a.refreshToken)).json as { key: string; refreshToken: string };
    const other = await create('--subject', 'u-1005', '--role', 'authenticated', '--audience', 'reports-api');
    for (const key of [a2.key, b.key, other.key]) t.same(status(await get('/api/reports', key)), [200, undefined]);
    const all = await portcullis('keys', 'revoke', '--subject', 'u-1004', '--json');
    t.equal(all.code, 0, all.err);
    t.equal((JSON.parse(all.out) as { revoked: string[] }).revoked.length, 2, 'the two live keys of u-1004');
    t.same(status(await refusedSoon(a2.key)), [401, 'key-revoked'], 'revoke-all stops the refreshed key');
    t.same(status(await refusedSoon(b.key)), [401, 'key-revoked'], '... and the other key');
    t.same(status(await refresh(a2.refreshToken)), [401, 'refresh-invalid'], '... and their refresh tokens');
    t.same(status(await refresh(b.refreshToken)), [401, 'refresh-invalid']);
    t.same(status(await get('/api/reports', other.key)), [200, undefined], 'other users keep working');
    const fresh = await create('--subject', 'u-1004', '--role', 'authenticated', '--audience', 'reports-api');
    t.same(status(await get('/api/reports', fresh.key)), [200, undefined], 'a key issued after the revoke-all works');
    const list = JSON.parse((await portcullis('keys', 'list', '--subject', 'u-1004', '--json')).out) as Array<{ status: string; refreshable: boolean }>;
    t.same(list.map((k) => k.status).sort(), ['active', 'revoked', 'revoked', 'revoked'], 'keys list: the refreshed-away key, two revoked, one new');
  });

  t.test('logout revokes the key it is called with', async (t) => {
    const k = await create('--subject', 'u-1006', '--role', 'authenticated', '--audience', 'reports-api', '--allow-ip', '127.0.0.1/32');
    t.same(status(await get('/api/reports', k.key)), [200, undefined]);
    const out = await call('POST', '/.portcullis/logout', { authorization: `Bearer ${k.key}` });
    t.same(status(out), [204, undefined], 'logout: 204');
    t.equal(out.headers['set-cookie'], 'portcullis_refresh=; Max-Age=0; Path=/.portcullis/; HttpOnly; Secure; SameSite=Strict', 'a browser drops its refresh cookie');
    t.same(status(await get('/api/reports', k.key)), [401, 'key-revoked'], 'then the key is refused');
    t.same(status(await refresh(k.refreshToken)), [401, 'refresh-invalid'], 'and cannot be refreshed');
    t.same(status(await call('POST', '/.portcullis/logout', { authorization: `Bearer ${k.key}` })), [401, 'key-revoked'], 'a second logout is refused');
  });
}
