import t from 'tap';
import { randomInt } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { serviceSkip } from '../helpers/services.js';
import { startExample } from './harness.js';

// examples/connection-string-keys.yaml: keys sent as `site.example:443:KEY`, one default
// key per user replaced on regeneration, and keys bound to the lifetime of a running job.

const CONFIG = 'examples/connection-string-keys.yaml';
const PREAMBLE = 'site.example:443:';

interface Created {
  id: string;
  key: string;
  name: string | null;
  expiresAt: string | null;
  replaced: string[];
}

const skip = await serviceSkip('postgres');
if (skip) t.test('connection-string keys example', { skip }, async () => {});
else {
  const { p, up, url, portcullis } = await startExample(t, CONFIG, ({ db, upstream }) => ({ DATABASE_URL: db, UPSTREAM_URL: upstream, REDIS_URL: '' }));
  t.ok(await p.core.revocation.waitReady(5_000), 'revocation view ready');

  const create = async (...args: string[]): Promise<Created> => {
    const r = await portcullis('keys', 'create', '--json', ...args);
    if (r.code !== 0) throw new Error(r.err);
    return JSON.parse(r.out) as Created;
  };
  const get = async (path: string, headers: Record<string, string>) => {
    const r = await request(url + path, { headers });
    const text = await r.body.text();
    return [r.statusCode, r.statusCode >= 400 ? (JSON.parse(text) as { code?: string }).code : undefined] as const;
  };
  const bearer = (v: string) => ({ authorization: `Bearer ${v}` });
  /** Polls (bounded) until the credential is refused; resolves with the answer and how long it took. */
  const refusedWithin = async (headers: Record<string, string>, ms = 2_000) => {
    const t0 = performance.now();
    let a = await get('/api/runs', headers);
    while (a[0] === 200 && performance.now() - t0 < ms) {
      await new Promise((r) => setTimeout(r, 5));
      a = await get('/api/runs', headers);
    }
    return { answer: a, ms: performance.now() - t0 };
  };

  t.test('keys sent with a connection-string preamble', async (t) => {
    const k = await create('--subject', 'alice', '--role', 'user', '--name', 'default');
    const life = Date.parse(k.expiresAt!) - Date.now();
    t.ok(life > 8759 * 3_600_000 && life <= 8760 * 3_600_000, 'a default key lasts a year (apiKeys.defaultTtl)');
    const secret = k.key.slice(k.key.lastIndexOf('_') + 1);
    for (const [how, headers] of [
      ['Authorization: Bearer site.example:443:KEY', bearer(PREAMBLE + k.key)],
      ['Authorization: ApiKey site.example:443:KEY', { authorization: `ApiKey ${PREAMBLE}${k.key}` }],
      ['X-Api-Key: site.example:443:KEY', { 'x-api-key': PREAMBLE + k.key }],
      ['both, same key', { ...bearer(PREAMBLE + k.key), 'x-api-key': k.key }],
      ['the bare key', bearer(k.key)],
    ] as const) {
      const before = up.seen.length;
      t.same(await get('/api/runs?limit=5', headers), [200, undefined], how);
      const seen = up.seen[before]!;
      t.equal(seen.url, '/api/runs?limit=5');
      t.same([seen.headers['x-auth-subject'], seen.headers['x-auth-role'], seen.headers['x-auth-key-id']], ['alice', 'user', k.id], `${how}: identity upstream`);
      t.equal(seen.headers.authorization, undefined, `${how}: no Authorization upstream`);
      t.equal(seen.headers['x-api-key'], undefined, `${how}: no X-Api-Key upstream`);
      t.notOk(seen.rawHeaders.some((v) => v.includes(secret) || v.includes(PREAMBLE)), `${how}: neither the key nor its preamble reaches the upstream`);
    }
    t.same(await get('/api/v1/admin/users', bearer(PREAMBLE + k.key)), [403, 'authorisation-required'], 'a user key is not an admin key');
  });

  t.test('an empty or wrong remainder is refused', async (t) => {
    t.same(await get('/api/runs', bearer(PREAMBLE)), [401, 'key-invalid'], 'Bearer site.example:443: (nothing after the last colon)');
    t.same(await get('/api/runs', { 'x-api-key': PREAMBLE }), [401, 'key-invalid'], 'X-Api-Key: site.example:443:');
    t.same(await get('/api/runs', bearer(`${PREAMBLE}pcl_not_a_key`)), [401, 'key-invalid'], 'a malformed key after the preamble');
    const k = await create('--subject', 'alice', '--role', 'user', '--name', 'spare');
    t.same(await get('/api/runs', { ...bearer(PREAMBLE + k.key), 'x-api-key': `${PREAMBLE}${k.key.slice(0, -1)}${k.key.endsWith('x') ? 'y' : 'x'}` }), [400, 'bad-request'], 'two different keys in one request');
    t.same(await get('/api/runs', {}), [401, 'token-missing']);
    const before = up.seen.length;
    t.same(await get('/healthz', {}), [200, undefined], 'the public route needs no key');
    t.equal(up.seen.length, before + 1);
  });

  t.test("regenerating a user's key replaces it everywhere at once", async (t) => {
    const old = await create('--subject', 'bob', '--role', 'user', '--name', 'default');
    const job = await create('--subject', 'bob', '--role', 'user', '--name', 'job-1');
    t.same(await get('/api/runs', bearer(PREAMBLE + old.key)), [200, undefined], 'old key cached');
    const next = await create('--subject', 'bob', '--role', 'user', '--name', 'default', '--replace');
    t.same(next.replaced, [old.id], 'the previous default key is replaced');
    const { answer, ms } = await refusedWithin(bearer(PREAMBLE + old.key));
    t.same(answer, [401, 'key-revoked'], 'the old key is refused');
    t.ok(ms < 500, `refused ${ms.toFixed(1)} ms after the CLI returned`);
    t.same(await get('/api/runs', bearer(PREAMBLE + next.key)), [200, undefined], 'the new key works');
    t.same(await get('/api/runs', bearer(PREAMBLE + job.key)), [200, undefined], 'keys with other names are untouched');
    const list = JSON.parse((await portcullis('keys', 'list', '--subject', 'bob', '--json')).out) as Array<{ id: string; name: string; status: string }>;
    t.same(list.map((k) => [k.name, k.status]), [['default', 'revoked'], ['job-1', 'active'], ['default', 'active']]);
  });

  t.test('keys the API issued itself keep working, preamble and all', async (t) => {
    // `APIKey.generate_api_key`: `_id` is a random nonce of letters and digits, stored as is.
    const LETTERS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
    const nonce = () => Array.from({ length: 24 }, () => LETTERS[randomInt(LETTERS.length)]).join('');
    const userKey = nonce();
    const jobKey = nonce();
    const dir = await mkdtemp(join(tmpdir(), 'pcl-flywheel-'));
    t.teardown(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'apikeys.jsonl');
    await writeFile(file, [
      { key: userKey, subject: 'dana', role: 'user', name: 'default', expiresAt: null },
      { key: jobKey, subject: 'dana', role: 'user', name: 'job-99', expiresAt: null },
    ].map((l) => JSON.stringify(l)).join('\n'));
    const r = await portcullis('keys', 'import', '--file', file, '--json');
    t.equal(r.code, 0, r.err);
    const imported = (JSON.parse(r.out) as { keys: Array<{ id: string; name: string; expiresAt: string | null }> }).keys;
    t.same(imported.map((k) => k.expiresAt), [null, null], 'never expiring, like the API\'s own keys');
    for (const key of [userKey, jobKey]) {
      const before = up.seen.length;
      t.same(await get('/api/runs', bearer(PREAMBLE + key)), [200, undefined], 'sent with its connection-string preamble');
      const seen = up.seen[before]!;
      t.equal(seen.headers['x-auth-subject'], 'dana');
      t.notOk(seen.rawHeaders.some((v) => v.includes(key)), 'the key never reaches the upstream');
    }
    const next = await create('--subject', 'dana', '--role', 'user', '--name', 'default', '--replace');
    t.same(next.replaced, [imported[0]!.id], 'regenerating replaces the imported user key');
    t.same((await refusedWithin(bearer(PREAMBLE + userKey))).answer, [401, 'key-revoked'], 'the old key is refused');
    t.same(await get('/api/runs', bearer(PREAMBLE + jobKey)), [200, undefined], 'the job key is untouched');
  });

  t.test('keys bound to a running job stop when the job ends', async (t) => {
    // A job with a known lifetime: its key expires with it.
    const short = await create('--subject', 'carol', '--role', 'user', '--name', 'job-4711', '--expires', '2s');
    t.ok(Date.parse(short.expiresAt!) - Date.now() <= 2_000, 'expires with the job');
    t.same(await get('/api/runs/4711', bearer(PREAMBLE + short.key)), [200, undefined], 'works while the job runs (and is cached)');
    const wait = Date.parse(short.expiresAt!) - Date.now();
    await new Promise((r) => setTimeout(r, Math.max(0, wait) + 50));
    t.same(await get('/api/runs/4711', bearer(PREAMBLE + short.key)), [401, 'key-expired'], 'refused once the job is over, cached or not');

    // A job that ends before its planned lifetime: the scheduler removes every key of the
    // job by its name, however many the job was given.
    const long = await create('--subject', 'carol', '--role', 'user', '--name', 'job-4712', '--expires', '6h');
    const second = await create('--subject', 'carol', '--role', 'user', '--name', 'job-4712', '--expires', '6h');
    t.same(await get('/api/runs/4712', bearer(PREAMBLE + long.key)), [200, undefined]);
    const r = await portcullis('keys', 'revoke', '--name', 'job-4712');
    t.equal(r.code, 0, r.err);
    for (const k of [long, second]) {
      const { answer } = await refusedWithin(bearer(PREAMBLE + k.key));
      t.same(answer, [401, 'key-revoked'], 'refused once the job ended');
    }
    const mine = await create('--subject', 'carol', '--role', 'user', '--name', 'default');
    t.same(await get('/api/runs', bearer(PREAMBLE + mine.key)), [200, undefined], "the user's own key is unaffected");
  });
}
