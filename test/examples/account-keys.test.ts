import t from 'tap';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { serviceSkip } from '../helpers/services.js';
import { startExample } from './harness.js';

// examples/account-keys.yaml in front of storj's account-management API keys: UUID keys
// stored as sha256.Sum256(uuid.Bytes()), 720 h by default, revoked by setting the expiry to
// now. The keys are built and hashed here as accountmanagementapikeys/service.go does.

const CONFIG = 'examples/account-keys.yaml';
const HOUR = 3_600_000;
const textSha256 = (s: string) => createHash('sha256').update(s).digest('hex');

/** storj.io/common/uuid `FromString(s).Bytes()`: the 16 bytes the hex digits spell. */
function uuidBytes(s: string): Buffer {
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(s)) throw new Error(`not a UUID: ${s}`);
  return Buffer.from(s.replaceAll('-', ''), 'hex');
}

/** What the API stores for a key (`string(sha256.Sum256(id.Bytes())[:])`), exported as hex. */
const storedDigest = (apiKey: string) => createHash('sha256').update(uuidBytes(apiKey)).digest('hex');

/** `GenerateNewKey` + `InsertIntoDB`: a random UUID; expiry now + expiration, 720 h when none is given. */
function issue(now: number, expirationMs = 0): { apiKey: string; hash: string; expiresAt: number } {
  const apiKey = randomUUID();
  return { apiKey, hash: storedDigest(apiKey), expiresAt: now + (expirationMs > 0 ? expirationMs : 720 * HOUR) };
}

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
  const importLines = async (name: string, lines: object[]) => {
    const file = join(dir, name);
    await writeFile(file, lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
    return portcullis('keys', 'import', '--file', file, '--json');
  };

  // The API's table as it stands: digests of the UUIDs' bytes with their expiries; one key
  // issued without an expiration (720 h), one revoked (expiry set to now), one exported
  // without an expiry column, and one known in plaintext.
  const now = Date.now();
  const member = issue(now, 600 * HOUR);
  const viewer = issue(now, 24 * HOUR);
  const defaulted = issue(now);
  const revoked = issue(now - HOUR);
  revoked.expiresAt = now - 1000;
  const undated = issue(now);
  const owner = randomUUID();
  const lines = [
    { sha256: member.hash, digestOf: 'uuid-bytes', subject: 'acct-1001', role: 'member', name: 'ci', expiresAt: new Date(member.expiresAt).toISOString() },
    { key: owner, digestOf: 'uuid-bytes', subject: 'acct-1002', role: 'owner', scopes: ['billing'], expiresAt: new Date(now + 720 * HOUR).toISOString() },
    { sha256: viewer.hash, digestOf: 'uuid-bytes', subject: 'acct-1004', role: 'viewer', expiresAt: new Date(viewer.expiresAt).toISOString() },
    { sha256: defaulted.hash, digestOf: 'uuid-bytes', subject: 'acct-1005', role: 'member', expiresAt: new Date(defaulted.expiresAt).toISOString() },
    { sha256: revoked.hash, digestOf: 'uuid-bytes', subject: 'acct-1006', role: 'member', expiresAt: new Date(revoked.expiresAt).toISOString() },
    { sha256: undated.hash, digestOf: 'uuid-bytes', subject: 'acct-1007', role: 'member' },
  ];
  const importedAt = Date.now();
  const imported = await importLines('keys.jsonl', lines);

  t.test('import', async (t) => {
    t.equal(imported.code, 0, imported.err);
    const r = JSON.parse(imported.out) as { imported: number; keys: ListedKey[] };
    t.equal(r.imported, lines.length);
    t.ok(r.keys.every((k) => k.legacy), 'all imported as legacy keys');
    const bySubject = Object.fromEntries(r.keys.map((k) => [k.subject, k]));
    t.equal(bySubject['acct-1006']!.status, 'expired', 'the key the API revoked is imported as expired');
    const life = Date.parse(bySubject['acct-1007']!.expiresAt!) - importedAt;
    t.ok(life > 719 * HOUR && life <= 720 * HOUR + 5_000, `no expiry in the line: 720 h from the import (${(life / HOUR).toFixed(2)} h)`);
    const again = await importLines('keys.jsonl', lines);
    t.not(again.code, 0, 'importing the same keys twice is refused');
    t.match(again.out + again.err, /already imported/);
    const partial = await importLines('bad.jsonl', [
      { sha256: storedDigest(randomUUID()), digestOf: 'uuid-bytes', subject: 'acct-2001', role: 'member' },
      { key: 'not-a-uuid-at-all', digestOf: 'uuid-bytes', subject: 'acct-2002', role: 'member' },
    ]);
    t.not(partial.code, 0);
    t.match(partial.out + partial.err, /bad\.jsonl:2 "key" must be a UUID/);
    t.equal((await list('--subject', 'acct-2001')).length, 0, 'all lines or none: the good line was not imported either');
  });

  t.test('clients send the UUID unchanged, in any letter case', async (t) => {
    const keys = await list();
    const idOf = (subject: string) => keys.find((k) => k.subject === subject)!.id;
    for (const [what, headers, subject, role] of [
      ['X-Api-Key (imported by digest)', { 'x-api-key': member.apiKey }, 'acct-1001', 'member'],
      ['Bearer (imported by digest)', { authorization: `Bearer ${member.apiKey}` }, 'acct-1001', 'member'],
      ['upper case, as the API accepts it', { 'x-api-key': member.apiKey.toUpperCase() }, 'acct-1001', 'member'],
      ['mixed case', { authorization: `Bearer ${member.apiKey.slice(0, 18).toUpperCase()}${member.apiKey.slice(18)}` }, 'acct-1001', 'member'],
      ['Bearer (imported as plaintext)', { authorization: `Bearer ${owner}` }, 'acct-1002', 'owner'],
      ['X-Api-Key (another account)', { 'x-api-key': viewer.apiKey }, 'acct-1004', 'viewer'],
      ['issued without an expiration', { 'x-api-key': defaulted.apiKey }, 'acct-1005', 'member'],
      ['exported without an expiry', { 'x-api-key': undated.apiKey }, 'acct-1007', 'member'],
    ] as const) {
      const before = up.seen.length;
      t.same(await get('/v2/accounts/1/profile', headers), [200, undefined], what);
      const h = up.seen[before]!.headers;
      t.same([h['x-auth-subject'], h['x-auth-role'], h['x-auth-key-id'], h['x-auth-method']], [subject, role, idOf(subject), 'apiKey'], `${what}: identity upstream`);
      t.equal(h['x-api-key'], undefined, `${what}: the key is not forwarded`);
      t.equal(h.authorization, undefined);
    }
    t.same(await get('/v2/accounts/1/billing/invoices', { 'x-api-key': owner }), [200, undefined], 'owner with the billing scope');
    t.same(await get('/v2/accounts/1/billing/invoices', { 'x-api-key': member.apiKey }), [403, 'authorisation-required'], 'member: not billing');
    t.same(await call('PATCH', '/v2/accounts/1', { 'x-api-key': viewer.apiKey }), [403, 'authorisation-required'], 'viewer: read only');
    t.same(await call('PATCH', '/v2/accounts/1', { 'x-api-key': member.apiKey }), [200, undefined], 'member may write');
  });

  t.test('anything but the right UUID is refused and never reaches the API', async (t) => {
    const before = up.seen.length;
    const typo = member.apiKey.slice(0, -1) + (member.apiKey.endsWith('0') ? '1' : '0');
    for (const [what, key] of [
      ['an unknown UUID', randomUUID()],
      ['one character off', typo],
      ['the stored digest', member.hash],
      ['the UUID without hyphens', member.apiKey.replaceAll('-', '')],
      ['the UUID in braces', `{${member.apiKey}}`],
      ['the digest of the UUID\'s text', textSha256(member.apiKey)],
    ]) t.same(await get('/v2/accounts/1/profile', { 'x-api-key': key! }), [401, 'key-invalid'], what!);
    t.same(await get('/v2/accounts/1/profile', { 'x-api-key': revoked.apiKey }), [401, 'key-expired'], 'revoked by the API (expiry set to now) before the import');
    t.same(await get('/v2/accounts/1/profile', {}), [401, 'token-missing']);
    t.equal(up.seen.length, before, 'the upstream saw none of them');
  });

  t.test('keys expire on their own schedule', async (t) => {
    const soon = issue(Date.now(), 3_000);
    const r = await importLines('soon.jsonl', [{ sha256: soon.hash, digestOf: 'uuid-bytes', subject: 'acct-1003', role: 'member', expiresAt: new Date(soon.expiresAt).toISOString() }]);
    t.equal(r.code, 0, r.err);
    t.same(await get('/v2/accounts/3/profile', { 'x-api-key': soon.apiKey }), [200, undefined], 'valid (and cached) until its expiry');
    t.equal((await list('--subject', 'acct-1003'))[0]!.status, 'active');
    await new Promise((r) => setTimeout(r, Math.max(0, soon.expiresAt - Date.now()) + 50));
    t.same(await get('/v2/accounts/3/profile', { 'x-api-key': soon.apiKey }), [401, 'key-expired'], 'refused once its expiry has passed, cached or not');
    t.same(await get('/v2/accounts/3/profile', { 'x-api-key': soon.apiKey.toUpperCase() }), [401, 'key-expired'], 'in any letter case');
    t.equal((await list('--subject', 'acct-1003'))[0]!.status, 'expired');
  });

  t.test('revoking an imported key stops every spelling of it, cached or not', async (t) => {
    const spellings = [viewer.apiKey, viewer.apiKey.toUpperCase()];
    for (const k of spellings) t.same(await get('/v2/accounts/4/profile', { 'x-api-key': k }), [200, undefined], `${k === viewer.apiKey ? 'lower' : 'upper'} case cached`);
    const viewerKey = (await list('--subject', 'acct-1004'))[0]!;
    const r = await portcullis('keys', 'revoke', viewerKey.id);
    t.equal(r.code, 0, r.err);
    const deadline = Date.now() + 1_000;
    for (const k of spellings) {
      let a = await get('/v2/accounts/4/profile', { 'x-api-key': k });
      while (a[0] === 200 && Date.now() < deadline) {
        await new Promise((res) => setTimeout(res, 20));
        a = await get('/v2/accounts/4/profile', { 'x-api-key': k });
      }
      t.same(a, [401, 'key-revoked'], 'refused within 1 s');
    }

    const all = await list();
    const bySubject = Object.fromEntries(all.map((k) => [k.subject, k]));
    t.same(
      ['acct-1001', 'acct-1002', 'acct-1003', 'acct-1004', 'acct-1006'].map((s) => [s, bySubject[s]?.legacy, bySubject[s]?.status]),
      [['acct-1001', true, 'active'], ['acct-1002', true, 'active'], ['acct-1003', true, 'expired'], ['acct-1004', true, 'revoked'], ['acct-1006', true, 'expired']],
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
