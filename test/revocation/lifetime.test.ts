import t from 'tap';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { SignJWT } from 'jose';
import { request } from 'undici';
import { parseConfig } from '../../src/config/load.js';
import { startPortcullis, type Portcullis } from '../../src/gateway.js';
import { startRawUpstream } from '../hardening/raw-upstream.js';
import { memoryLogger } from '../helpers/gateway.js';
import { REDIS_URL, redisPrefix, serviceSkip, tempDatabase } from '../helpers/services.js';

// A revoked JWT stays revoked for as long as any gateway could still accept it: its expiry
// plus jwt.clockTolerance (at most 5m). Through running gateways on real PostgreSQL and
// Redis, with the upstream recording every byte; and the durable records past that point
// pruned by a running gateway.

const SECRET = 'lifetime-secret-that-is-long-enough-0123456789';
const ISSUER = 'https://auth.lifetime.test';
const MINUTE = 60_000;

const skip = (await serviceSkip('postgres')) || (await serviceSkip('redis'));
// One test around the whole run: tap then waits for every step, instead of racing the
// file's top-level awaits to the end of its root test.
await t.test('revocation lifetime', skip ? { skip } : {}, async (t) => {
  const db = await tempDatabase();
  t.teardown(() => db.drop());
  const raw = await startRawUpstream();
  t.teardown(() => raw.close());
  const yaml = (redis: string, keyPrefix: string) => `
upstreams: { api: { url: "${raw.url}" } }
roles: [basic, admin]
store: { url: "${db.url}", poolSize: 2 }
revocation: { redis: "${redis}", keyPrefix: "${keyPrefix}", onError: deny }
jwt:
  clockTolerance: 5m
  issuers: [{ name: t, issuer: "${ISSUER}", algorithms: [HS256], secret: "${SECRET}" }]
log: { level: warn }
routes:
  - match: { path: "/**" }
    minRole: basic
    upstream: api
`;
  const start = async (redis: string, keyPrefix: string, pruneIntervalMs?: number): Promise<Portcullis> => {
    const { logger } = memoryLogger('warn');
    const p = await startPortcullis(parseConfig(yaml(redis, keyPrefix), 'lifetime.yaml', {}), {
      logger, listen: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 }, ...(pruneIntervalMs ? { pruneIntervalMs } : {}),
    });
    t.teardown(() => p.close(100));
    t.ok(await p.core.revocation.waitReady(5_000), 'revocation ready');
    return p;
  };
  const sign = (expMs: number) =>
    new SignJWT({ role: 'basic' }).setProtectedHeader({ alg: 'HS256' }).setIssuer(ISSUER).setSubject('alice')
      .setIssuedAt(Math.floor((expMs - 3_600_000) / 1000)).setExpirationTime(Math.floor(expMs / 1000)).sign(new TextEncoder().encode(SECRET));
  const call = async (p: Portcullis, path: string, token: string, method = 'GET') => {
    const r = await request(p.gateway!.url() + path, { method, headers: { authorization: `Bearer ${token}` } });
    const text = await r.body.text();
    return [r.statusCode, r.statusCode >= 400 ? (JSON.parse(text) as { code?: string }).code : undefined] as const;
  };

  const rp = redisPrefix();
  t.teardown(() => rp.clean());
  const first = await start(REDIS_URL, rp.prefix);
  // Expired 4 minutes ago: still accepted under a 5-minute tolerance, and well past the
  // 2 minutes a marker used to outlive the expiry.
  const token = await sign(Date.now() - 4 * MINUTE);

  await t.test('a logged-out token stays refused while the tolerance would still accept it', async (t) => {
    t.same(await call(first, '/a', token), [200, undefined], 'expired 4 min ago, within the 5 min tolerance');
    t.same(await call(first, '/.portcullis/logout', token, 'POST'), [204, undefined]);
    const before = raw.requests.length;
    t.same(await call(first, '/a', token), [401, 'token-revoked']);
    t.equal(raw.requests.length, before, 'the upstream saw nothing of it');
  });

  await t.test('every gateway that loads revocations from the store refuses it too', async (t) => {
    const fresh = redisPrefix();
    t.teardown(() => fresh.clean());
    const before = raw.requests.length;
    const redisSeeded = await start(REDIS_URL, fresh.prefix);
    t.same(await call(redisSeeded, '/a', token), [401, 'token-revoked'], 'an empty Redis, re-seeded from PostgreSQL');
    const notified = await start('', 'unused:');
    t.same(await call(notified, '/a', token), [401, 'token-revoked'], 'PostgreSQL LISTEN/NOTIFY, no Redis');
    t.equal(raw.requests.length, before, 'the upstream saw nothing of it');
  });

  await t.test('a running gateway prunes the records that can no longer matter', async (t) => {
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    t.teardown(() => c.end());
    const now = Date.now();
    const dead = `dead-${randomUUID()}`;
    const alive = `alive-${randomUUID()}`;
    const forever = `forever-${randomUUID()}`;
    await c.query(
      `INSERT INTO token_revocations (id, issuer, until, created_at) VALUES ($1, '', $2, now()), ($3, '', $4, now()), ($5, '', NULL, now())`,
      [dead, new Date(now - 8 * MINUTE), alive, new Date(now - 4 * MINUTE), forever],
    );
    const ids = async () => (await c.query<{ id: string }>('SELECT id FROM token_revocations ORDER BY id')).rows.map((r) => r.id);
    t.ok((await ids()).includes(dead), 'the dead record is there before');
    const pruner = redisPrefix();
    t.teardown(() => pruner.clean());
    await start(REDIS_URL, pruner.prefix, 200);
    let left = await ids();
    for (let i = 0; i < 50 && left.includes(dead); i++) {
      await new Promise((r) => setTimeout(r, 100));
      left = await ids();
    }
    t.notOk(left.includes(dead), 'expired 8 min ago (past expiry + 5 min tolerance + 2 min margin): pruned');
    t.ok(left.includes(alive), 'expired 4 min ago: kept, a gateway may still accept the token');
    t.ok(left.includes(forever), 'a revocation without end: kept');
    t.equal(left.filter((id) => id.startsWith('sha256:')).length, 1, 'the logged-out token\'s record: kept');
    t.same(await call(first, '/a', token), [401, 'token-revoked'], 'and the token is still refused');
  });
});
