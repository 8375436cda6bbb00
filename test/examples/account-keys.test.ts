import t from 'tap';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { serviceSkip } from '../helpers/services.js';
import { startExample } from './harness.js';

// examples/account-keys.yaml: UUID keys of an account-management API, imported as SHA-256
// digests (and one as plaintext), sent unchanged by clients, expiring on their own
// schedule; new keys default to 720 hours.

const CONFIG = 'examples/account-keys.yaml';
const HOUR = 3_600_000;
const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

interface ListedKey {
  id: string;
  name: string | null;
  subject: string;
  role: string;
  scopes: string[];
  legacy: boolean;
  status: string;
  expiresAt: string | null;
}

const skip = await serviceSkip('postgres');
if (skip) t.test('account keys example', { skip }, async () => {});
else {
  const dir = await mkdtemp(join(tmpdir(), 'pcl-account-keys-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const { loaded, up, url, portcullis } = await startExample(t, CONFIG, ({ db, upstream }) => ({ DATABASE_URL: db, UPSTREAM_URL: upstream, REDIS_URL: '' }));

  const list = async (...args: string[]) => JSON.parse((await portcullis('keys', 'list', '--json', ...args)).out) as ListedKey[];
  const call = async (method: string, path: string, headers: Record<string, string>) => {
    const r = await request(url + path, { method, headers });
    const text = await r.body.text();
    return [r.statusCode, r.statusCode >= 400 ? (JSON.parse(text) as { code?: string }).code : undefined] as const;
  };
  const get = (path: string, headers: Record<string, string>) => call('GET', path, headers);

  // The API's keys as its database holds them: digests of UUIDs, one known in plaintext.
  const member = randomUUID();
  const owner = randomUUID();
  const viewer = randomUUID();
  const now = Date.now();
  const lines = [
    { sha256: sha256(member), subject: 'acct-1001', role: 'member', name: 'ci', expiresAt: new Date(now + 600 * HOUR).toISOString() },
    { key: owner, subject: 'acct-1002', role: 'owner', scopes: ['billing'], expiresAt: new Date(now + 720 * HOUR).toISOString() },
    { sha256: sha256(viewer), subject: 'acct-1004', role: 'viewer', expiresAt: new Date(now + 24 * HOUR).toISOString() },
  ];
  const file = join(dir, 'keys.jsonl');
  await writeFile(file, lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
  const imported = await portcullis('keys', 'import', '--file', file, '--json');

  t.test('import', async (t) => {
    t.equal(imported.code, 0, imported.err);
    const r = JSON.parse(imported.out) as { imported: number; keys: ListedKey[] };
    t.equal(r.imported, 3);
    t.ok(r.keys.every((k) => k.legacy), 'all imported as legacy keys');
    const again = await portcullis('keys', 'import', '--file', file);
    t.not(again.code, 0, 'importing the same keys twice is refused');
    t.match(again.err, /already imported/);
    const bad = join(dir, 'bad.jsonl');
    await writeFile(bad, [JSON.stringify({ sha256: sha256(randomUUID()), subject: 'acct-2001', role: 'member' }), JSON.stringify({ sha256: 'NOT-HEX', subject: 'acct-2002', role: 'member' })].join('\n'));
    const partial = await portcullis('keys', 'import', '--file', bad);
    t.not(partial.code, 0);
    t.match(partial.err, new RegExp(`${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:2 "sha256" must be 64 lowercase hex characters`));
    t.equal((await list('--subject', 'acct-2001')).length, 0, 'all lines or none: the good line was not imported either');
  });

  t.test('clients send the UUID unchanged', async (t) => {
    const keys = await list();
    const idOf = (subject: string) => keys.find((k) => k.subject === subject)!.id;
    for (const [what, headers, subject, role] of [
      ['X-Api-Key (imported by digest)', { 'x-api-key': member }, 'acct-1001', 'member'],
      ['Bearer (imported by digest)', { authorization: `Bearer ${member}` }, 'acct-1001', 'member'],
      ['Bearer (imported as plaintext)', { authorization: `Bearer ${owner}` }, 'acct-1002', 'owner'],
      ['X-Api-Key (another account)', { 'x-api-key': viewer }, 'acct-1004', 'viewer'],
    ] as const) {
      const before = up.seen.length;
      t.same(await get('/v2/accounts/1/profile', headers), [200, undefined], what);
      const h = up.seen[before]!.headers;
      t.same([h['x-auth-subject'], h['x-auth-role'], h['x-auth-key-id'], h['x-auth-method']], [subject, role, idOf(subject), 'apiKey'], `${what}: identity upstream`);
      t.equal(h['x-api-key'], undefined, `${what}: the key is not forwarded`);
      t.equal(h.authorization, undefined);
    }
    t.same(await get('/v2/accounts/1/profile', { 'x-api-key': viewer.toUpperCase() }), [401, 'key-invalid'], 'the UUID is compared as sent (digest of the exact text)');
    t.same(await get('/v2/accounts/1/billing/invoices', { 'x-api-key': owner }), [200, undefined], 'owner with the billing scope');
    t.same(await get('/v2/accounts/1/billing/invoices', { 'x-api-key': member }), [403, 'authorisation-required'], 'member: not billing');
    t.same(await call('PATCH', '/v2/accounts/1', { 'x-api-key': viewer }), [403, 'authorisation-required'], 'viewer: read only');
    t.same(await call('PATCH', '/v2/accounts/1', { 'x-api-key': member }), [200, undefined], 'member may write');
  });

  t.test('a wrong UUID is refused', async (t) => {
    t.same(await get('/v2/accounts/1/profile', { 'x-api-key': randomUUID() }), [401, 'key-invalid'], 'an unknown UUID');
    const typo = member.slice(0, -1) + (member.endsWith('0') ? '1' : '0');
    t.same(await get('/v2/accounts/1/profile', { 'x-api-key': typo }), [401, 'key-invalid'], 'one character off');
    t.same(await get('/v2/accounts/1/profile', { 'x-api-key': sha256(member) }), [401, 'key-invalid'], 'the stored digest is not a key');
    t.same(await get('/v2/accounts/1/profile', {}), [401, 'token-missing']);
  });

  t.test('keys expire on their own schedule', async (t) => {
    // Revoked the way the API did it: an expiry a moment away.
    const soon = randomUUID();
    const soonExpiry = new Date(Date.now() + 3_000).toISOString();
    const soonFile = join(dir, 'soon.jsonl');
    await writeFile(soonFile, JSON.stringify({ sha256: sha256(soon), subject: 'acct-1003', role: 'member', expiresAt: soonExpiry }) + '\n');
    const r = await portcullis('keys', 'import', '--file', soonFile);
    t.equal(r.code, 0, r.err);
    t.same(await get('/v2/accounts/3/profile', { 'x-api-key': soon }), [200, undefined], 'valid (and cached) until its expiresAt');
    t.equal((await list('--subject', 'acct-1003'))[0]!.status, 'active');
    await new Promise((r) => setTimeout(r, Math.max(0, Date.parse(soonExpiry) - Date.now()) + 50));
    t.same(await get('/v2/accounts/3/profile', { 'x-api-key': soon }), [401, 'key-expired'], 'refused once expiresAt has passed, cached or not');
    t.same(await get('/v2/accounts/3/profile', { 'x-api-key': soon }), [401, 'key-expired'], 'and stays refused');
    t.equal((await list('--subject', 'acct-1003'))[0]!.status, 'expired');
  });

  t.test('keys list shows the legacy keys with their status; revoking one', async (t) => {
    const viewerKey = (await list('--subject', 'acct-1004'))[0]!;
    const r = await portcullis('keys', 'revoke', viewerKey.id);
    t.equal(r.code, 0, r.err);
    let a = await get('/v2/accounts/4/profile', { 'x-api-key': viewer });
    for (let i = 0; i < 100 && a[0] === 200; i++) {
      await new Promise((res) => setTimeout(res, 20));
      a = await get('/v2/accounts/4/profile', { 'x-api-key': viewer });
    }
    t.same(a, [401, 'key-revoked'], 'a revoked legacy key is refused');

    const all = await list();
    const bySubject = Object.fromEntries(all.map((k) => [k.subject, k]));
    t.same(
      ['acct-1001', 'acct-1002', 'acct-1003', 'acct-1004'].map((s) => [s, bySubject[s]?.legacy, bySubject[s]?.status]),
      [['acct-1001', true, 'active'], ['acct-1002', true, 'active'], ['acct-1003', true, 'expired'], ['acct-1004', true, 'revoked']],
    );
    t.same([bySubject['acct-1001']!.name, bySubject['acct-1002']!.scopes, bySubject['acct-1002']!.role], ['ci', ['billing'], 'owner']);
    t.ok(all.every((k) => !('key' in k) && !('sha256' in k)), 'never a key or a digest in the list');
    const text = await portcullis('keys', 'list');
    t.match(text.out, /expired \(imported\)/, 'the table marks imported keys');
  });

  t.test('new keys default to 720 hours', async (t) => {
    t.equal(loaded.config.apiKeys.defaultTtl, 720 * HOUR, 'apiKeys.defaultTtl: 720h');
    const before = Date.now();
    const c = JSON.parse((await portcullis('keys', 'create', '--subject', 'acct-1001', '--role', 'member', '--json')).out) as { key: string; expiresAt: string; legacy: boolean };
    const life = Date.parse(c.expiresAt) - before;
    t.ok(life > 719 * HOUR && life <= 720 * HOUR + 5_000, `expires in ${(life / HOUR).toFixed(2)} h`);
    t.match(c.key, /^acct_/, 'a native key with the configured prefix');
    t.equal(c.legacy, false);
    t.same(await get('/v2/accounts/1/profile', { 'x-api-key': c.key }), [200, undefined]);
  });
}
