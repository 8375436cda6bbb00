import t from 'tap';
import type { Test } from 'tap';
import { createHash } from 'node:crypto';
import { KeyService, KeyServiceError, type KeyRevocationEvent } from '../../src/keys/service.js';
import { parseKey, parseRefreshToken } from '../../src/keys/format.js';
import { verifySecret } from '../../src/keys/hash.js';
import { openStore } from '../../src/store/open.js';
import type { KeyStore } from '../../src/store/types.js';
import { GatewayError } from '../../src/http/problem.js';
import { isStoreError } from '../../src/store/errors.js';
import { apiKeysConfig, FAST_HASH, TestClock } from './helpers.js';
import { tempPgDatabase } from '../store/helpers.js';

const HOUR = 3_600_000;

async function code(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    if (err instanceof KeyServiceError || err instanceof GatewayError || isStoreError(err)) return err.code;
    throw err;
  }
}

function suite(t: Test, name: string, open: () => Promise<KeyStore>): Promise<void> {
  return t.test(`KeyService on ${name}`, async (t) => {
    const store = await open();
    t.teardown(() => store.close());
    await store.migrate();
    const clock = new TestClock();
    const events: KeyRevocationEvent[] = [];
    const config = apiKeysConfig({ hash: FAST_HASH });
    const svc = new KeyService({ store, config, clock, roles: ['basic', 'premium', 'admin'], onRevoke: (e) => void events.push(e) });

    await t.test('create with defaults', async (t) => {
      const c = await svc.create({ subject: 'alice', role: 'basic' });
      const p = parseKey(c.key, 'pcl');
      t.equal(p?.id, c.id, 'the key carries its id');
      t.equal(c.expiresAt, clock.now() + 720 * HOUR, 'default TTL 720h');
      t.equal(c.status, 'active');
      t.same(c.replaced, []);
      t.equal(c.refreshToken, undefined);
      const rec = await store.getKey(c.id);
      t.ok(rec?.secretHash?.startsWith('$argon2id$'), 'argon2id at rest');
      t.equal(await verifySecret(rec!.secretHash!, p!.secret), true, 'the hash verifies the secret');
      t.notOk(JSON.stringify(rec).includes(p!.secret), 'the secret itself is not stored');
    });

    await t.test('create with every option', async (t) => {
      const c = await svc.create({
        subject: 'bob', role: 'premium', scopes: ['a:read', 'b:write', 'a:read'], name: 'ci',
        expiresIn: 2 * HOUR, notBeforeIn: 10 * 60_000, allowIps: ['10.0.0.0/8', '::1'], audiences: ['my-api'],
      });
      t.same(c.scopes, ['a:read', 'b:write'], 'scopes deduplicated, order kept');
      t.equal(c.name, 'ci');
      t.same(c.allowedIps, ['10.0.0.0/8', '::1']);
      t.same(c.audiences, ['my-api']);
      t.equal(c.notBefore, clock.now() + 600_000);
      t.equal(c.expiresAt, clock.now() + 2 * HOUR);
      t.equal(c.status, 'not-yet-valid');
      const never = await svc.create({ subject: 'bob', role: 'basic', expiresIn: null });
      t.equal(never.expiresAt, null, 'expiresIn null: no expiry');
    });

    await t.test('create validates its input', async (t) => {
      const cases: Array<[string, Parameters<KeyService['create']>[0]]> = [
        ['empty subject', { subject: ' ', role: 'basic' }],
        ['unknown role', { subject: 's', role: 'root' }],
        ['scope with space', { subject: 's', role: 'basic', scopes: ['a b'] }],
        ['empty scope', { subject: 's', role: 'basic', scopes: [''] }],
        ['bad CIDR', { subject: 's', role: 'basic', allowIps: ['10.0.0.0/40'] }],
        ['zero expiry', { subject: 's', role: 'basic', expiresIn: 0 }],
        ['negative not-before', { subject: 's', role: 'basic', notBeforeIn: -1 }],
        ['not-before after expiry', { subject: 's', role: 'basic', expiresIn: HOUR, notBeforeIn: 2 * HOUR }],
        ['control character in name', { subject: 's', role: 'basic', name: 'a\nb' }],
        // Beyond what a date holds, these were stored as no time: a not-before dropped (the
        // key usable at once), an expiry turned into never.
        ['an expiry past 100 years', { subject: 's', role: 'basic', expiresIn: 99_999_999_999 * 86_400_000 }],
        ['an expiry of 1e300 ms', { subject: 's', role: 'basic', expiresIn: 1e300 }],
        ['a not-before past 100 years', { subject: 's', role: 'basic', expiresIn: null, notBeforeIn: 99_999_999_999 * 86_400_000 }],
        ['a not-before just past 100 years', { subject: 's', role: 'basic', expiresIn: null, notBeforeIn: 36_501 * 86_400_000 }],
      ];
      for (const [what, opts] of cases) t.equal(await code(svc.create(opts)), 'invalid-argument', what);
      t.same(await store.listKeys({ subject: 's' }), [], 'nothing stored');
    });

    await t.test('--replace revokes the subject\'s other keys of the same name', async (t) => {
      events.length = 0;
      const a = await svc.create({ subject: 'carol', role: 'basic', name: 'ci' });
      const b = await svc.create({ subject: 'carol', role: 'basic', name: 'ci' });
      const other = await svc.create({ subject: 'carol', role: 'basic', name: 'deploy' });
      const elsewhere = await svc.create({ subject: 'dave', role: 'basic', name: 'ci' });
      const d = await svc.create({ subject: 'carol', role: 'basic', name: 'ci', replace: true });
      t.same([...d.replaced].sort(), [a.id, b.id].sort());
      const list = await svc.list({ subject: 'carol' });
      const status = Object.fromEntries(list.map((k) => [k.id, k.status]));
      t.same(status, { [a.id]: 'revoked', [b.id]: 'revoked', [other.id]: 'active', [d.id]: 'active' });
      t.equal((await store.getKey(elsewhere.id))?.revokedAt, null, 'another subject is untouched');
      t.same(events.map((e) => e.kind === 'key' && [e.keyId, e.reason, e.revocationId]).sort(), [[a.id, 'replace', `key:${a.id}`], [b.id, 'replace', `key:${b.id}`]].sort());
    });

    await t.test('list shows statuses and never a secret', async (t) => {
      const subject = 'erin';
      const k1 = await svc.create({ subject, role: 'basic', expiresIn: HOUR });
      clock.advance(1);
      const k2 = await svc.create({ subject, role: 'basic', notBeforeIn: HOUR, expiresIn: 3 * HOUR });
      clock.advance(1);
      const k3 = await svc.create({ subject, role: 'basic', refreshable: true });
      let list = await svc.list({ subject });
      t.same(list.map((k) => k.status), ['active', 'not-yet-valid', 'active']);
      t.equal(list[2]!.refreshable, true);
      const text = JSON.stringify(list);
      for (const secret of [k1.key, k2.key, k3.key, k3.refreshToken!]) t.notOk(text.includes(secret), 'no plaintext');
      t.notOk(/secretHash|refreshHash|argon2/.test(text), 'no hashes');
      clock.advance(2 * HOUR);
      list = await svc.list({ subject });
      t.same(list.map((k) => k.status), ['expired', 'active', 'expired']);
      clock.advance(-2 * HOUR);
      t.ok((await svc.list()).length > list.length, 'without a subject: all keys');
    });

    await t.test('revoke and revokeSubject', async (t) => {
      events.length = 0;
      const k = await svc.create({ subject: 'frank', role: 'basic' });
      const k2 = await svc.create({ subject: 'frank', role: 'basic' });
      const r = await svc.revoke(k.id);
      t.equal(r.changed, true);
      t.equal(r.key.status, 'revoked');
      t.same(events, [{ kind: 'key', keyId: k.id, revocationId: `key:${k.id}`, subject: 'frank', at: clock.now(), expiresAt: k.expiresAt, reason: 'revoke' }]);
      const revokedAt = clock.now();
      clock.advance(1_000);
      t.equal((await svc.revoke(k.id)).changed, false, 'idempotent');
      // Announced again (a retry after a failed announcement), at the time it was revoked.
      t.same(events[1], { ...events[0], at: revokedAt }, 'the same event again');
      events.length = 1;
      t.equal(await code(svc.revoke('nope')), 'not-found');
      events.length = 0;
      const all = await svc.revokeSubject('frank');
      t.same(all.revoked, [k2.id]);
      t.same(events, [{ kind: 'subject', subject: 'frank', revokedBefore: clock.now(), at: clock.now(), keyIds: [k2.id], revocationIds: [`key:${k2.id}`] }]);
      t.same((await svc.list({ subject: 'frank' })).map((x) => x.status), ['revoked', 'revoked']);
      clock.advance(1);
      const fresh = await svc.create({ subject: 'frank', role: 'basic' });
      t.equal(fresh.status, 'active', 'a key created afterwards works');
    });

    await t.test('rotate', async (t) => {
      events.length = 0;
      const old = await svc.create({ subject: 'gina', role: 'premium', scopes: ['x'], name: 'svc', audiences: ['a'], allowIps: ['10.0.0.0/8'], expiresIn: 10 * HOUR });
      clock.advance(HOUR);
      const next = await svc.rotate(old.id, 30 * 60_000);
      t.not(next.id, old.id);
      t.equal(next.rotatedFrom, old.id);
      t.equal(next.graceUntil, clock.now() + 30 * 60_000);
      t.same([next.subject, next.role, next.scopes, next.name, next.audiences, next.allowedIps], ['gina', 'premium', ['x'], 'svc', ['a'], ['10.0.0.0/8']], 'same grants');
      t.equal(next.expiresAt, clock.now() + 10 * HOUR, 'same lifetime, from now');
      t.ok(parseKey(next.key, 'pcl'));
      const o = (await svc.list({ subject: 'gina' })).find((k) => k.id === old.id)!;
      t.equal(o.status, 'rotating');
      t.equal(o.successorId, next.id);
      t.same(events.map((e) => [e.kind, e.kind === 'change' ? e.reason : '', e.kind === 'change' ? e.revocationId : '']), [['change', 'rotate', `key:${old.id}`]],
        'a grace period revokes nothing yet, but cached copies must learn the grace');
      t.equal(await code(svc.rotate(old.id)), 'conflict', 'already rotated');
      t.equal(await code(svc.rotate('nope')), 'not-found');
      clock.advance(31 * 60_000);
      t.equal((await svc.list({ subject: 'gina' })).find((k) => k.id === old.id)!.status, 'rotated', 'grace over');

      const quick = await svc.create({ subject: 'gina', role: 'basic' });
      events.length = 0;
      await svc.rotate(quick.id, 0);
      t.equal(events.length, 1, 'zero grace: revoked at once and published');
      t.equal(events[0]?.kind === 'key' && events[0].reason, 'rotate');
      const revoked = await svc.create({ subject: 'gina', role: 'basic' });
      await svc.revoke(revoked.id);
      t.equal(await code(svc.rotate(revoked.id)), 'conflict', 'revoked keys cannot be rotated');
      t.equal(await code(svc.rotate(quick.id, -5)), 'invalid-argument');
      t.equal(await code(svc.rotate(quick.id, 1e300)), 'invalid-argument', 'a grace past 100 years');
    });

    await t.test('rotating a refreshable key spends its refresh token', async (t) => {
      const old = await svc.create({ subject: 'rhea', role: 'basic', refreshable: true });
      const next = await svc.rotate(old.id, HOUR);
      t.type(next.refreshToken, 'string', 'the successor has a refresh token of its own');
      t.equal(parseRefreshToken(next.refreshToken!, 'pcl')?.id, next.id, 'bound to the successor');
      t.equal(next.refreshExpiresAt, clock.now() + config.refresh.tokenTtl);
      t.ok((await store.getKey(old.id))?.refreshSpentAt !== null, 'the old token is spent at once');
      for (let i = 0; i < 2; i++) t.equal(await code(svc.refresh(old.refreshToken!, '192.0.2.1')), 'refresh-invalid', `the old token mints nothing (${i + 1})`);
      t.equal((await store.getKey(next.id))?.revokedAt, null, 'presenting it does not revoke the successor');
      t.equal((await store.getKey(old.id))?.revokedAt, null, 'nor end the old key\'s grace');
      const minted = await svc.refresh(next.refreshToken!, '192.0.2.1');
      t.ok(minted.key, 'the successor\'s token refreshes');
      t.equal((await svc.list({ subject: 'rhea' })).length, 3, 'the rotated key minted nothing');
      const plain = await svc.rotate((await svc.create({ subject: 'rhea', role: 'basic' })).id, HOUR);
      t.equal(plain.refreshToken, undefined, 'a key without a refresh token rotates without one');
    });

    await t.test('update changes grants and expiry in place', async (t) => {
      events.length = 0;
      const k = await svc.create({ subject: 'uli', role: 'basic', scopes: ['a'], notBeforeIn: 10 * 60_000 });
      const secretHash = (await store.getKey(k.id))?.secretHash;
      const u = await svc.update(k.id, { role: 'admin', scopes: ['a', 'b', 'a'] });
      t.same([u.id, u.role, u.scopes, u.expiresAt], [k.id, 'admin', ['a', 'b'], k.expiresAt], 'same id, new grants, expiry kept');
      t.same(events, [{ kind: 'change', keyId: k.id, revocationId: `key:${k.id}`, subject: 'uli', at: clock.now(), reason: 'update' }], 'announced as a change');
      t.equal((await svc.update(k.id, { expiresIn: null })).expiresAt, null, 'never expires');
      t.equal((await svc.update(k.id, { expiresIn: HOUR })).expiresAt, clock.now() + HOUR);
      t.equal((await store.getKey(k.id))?.secretHash, secretHash, 'same secret');
      t.equal(await code(svc.update(k.id, {})), 'invalid-argument', 'nothing to update');
      t.equal(await code(svc.update(k.id, { role: 'root' })), 'invalid-argument', 'unknown role');
      t.equal(await code(svc.update(k.id, { scopes: ['has space'] })), 'invalid-argument', 'bad scope');
      t.equal(await code(svc.update(k.id, { expiresIn: 0 })), 'invalid-argument', 'zero lifetime');
      t.equal(await code(svc.update(k.id, { expiresIn: 60_000 })), 'invalid-argument', 'an expiry before not-before');
      t.equal(await code(svc.update(k.id, { expiresIn: 99_999_999_999 * 86_400_000 })), 'invalid-argument', 'an expiry past 100 years');
      t.equal((await store.getKey(k.id))?.expiresAt, clock.now() + HOUR, 'unchanged');
      t.equal(await code(svc.update('nope', { role: 'basic' })), 'not-found');
      await svc.revoke(k.id);
      t.equal(await code(svc.update(k.id, { role: 'basic' })), 'conflict', 'a revoked key stays as it was');
      const r = await svc.create({ subject: 'uli', role: 'basic' });
      await svc.rotate(r.id, HOUR);
      t.equal(await code(svc.update(r.id, { role: 'admin' })), 'conflict', 'a rotating key is updated through its successor');
      t.equal(await store.updateKey(r.id, { role: 'admin', scopes: [], expiresAt: null }), undefined, 'the store refuses it too');
    });

    await t.test('revokeByName revokes a job\'s keys, of one subject when asked', async (t) => {
      events.length = 0;
      const a = await svc.create({ subject: 'job-a', role: 'basic', name: 'nightly' });
      const b = await svc.create({ subject: 'job-b', role: 'basic', name: 'nightly' });
      const c = await svc.create({ subject: 'job-b', role: 'basic', name: 'nightly' });
      const other = await svc.create({ subject: 'job-a', role: 'basic', name: 'weekly' });
      const one = await svc.revokeByName('nightly', 'job-a');
      t.same(one.revoked, [a.id], 'only the subject\'s key of that name');
      const rest = await svc.revokeByName('nightly');
      t.same([...rest.revoked].sort(), [b.id, c.id].sort(), 'then every other key of that name');
      t.same(events.filter((e) => e.kind === 'key').map((e) => e.kind === 'key' && e.keyId).sort(), [a.id, b.id, c.id].sort(), 'each announced as a revocation');
      t.equal((await store.getKey(other.id))?.revokedAt, null, 'a key of another name is untouched');
      t.same((await svc.revokeByName('nightly')).revoked, [], 'nothing left to revoke');
      t.equal(await code(svc.revokeByName('')), 'invalid-argument');
    });

    await t.test('import: all lines valid', async (t) => {
      const plain = 'legacy-key-0123456789';
      const digest = createHash('sha256').update('other-legacy-key-abcdef').digest('hex');
      const file = [
        JSON.stringify({ key: plain, subject: 'henry', role: 'basic', scopes: ['r'], name: 'old' }),
        '',
        JSON.stringify({ sha256: digest, subject: 'henry', role: 'premium', expiresAt: new Date(clock.now() + HOUR).toISOString() }),
      ].join('\n');
      const res = await svc.importKeys(file, 'keys.jsonl');
      t.equal(res.imported.length, 2);
      t.ok(res.imported.every((k) => k.legacy && k.status === 'active'));
      const byDigest = await store.getKeyBySha256(createHash('sha256').update(plain).digest('hex'));
      t.same([byDigest?.subject, byDigest?.scopes, byDigest?.name, byDigest?.secretHash], ['henry', ['r'], 'old', null], 'stored as a digest');
      t.equal((await store.getKeyBySha256(digest))?.expiresAt, clock.now() + HOUR);
      t.equal(await code(svc.importKeys(file, 'keys.jsonl')), 'import-invalid', 'importing again is refused');
    });

    await t.test('import: expiry absent is the default lifetime, null is never, a past one is imported as expired', async (t) => {
      const now = clock.now();
      const lines = [
        { key: 'expiry-default-key-1', subject: 'jo', role: 'basic' },
        { key: 'expiry-never-key-1', subject: 'jo', role: 'basic', expiresAt: null },
        { key: 'expiry-set-key-1', subject: 'jo', role: 'basic', expiresAt: new Date(now + 2 * HOUR).toISOString() },
        // Revoked the way some services do it: expiry set to now, or to the zero time.
        { key: 'expiry-revoked-key-1', subject: 'jo', role: 'basic', expiresAt: new Date(now - 1000).toISOString() },
        { key: 'expiry-zero-key-1', subject: 'jo', role: 'basic', expiresAt: '0001-01-01T00:00:00Z' },
      ];
      const res = await svc.importKeys(lines.map((l) => JSON.stringify(l)).join('\n'), 'expiry.jsonl');
      const stored = await Promise.all(lines.map((l) => store.getKeyBySha256(createHash('sha256').update(l.key).digest('hex'))));
      t.same(stored.map((k) => k?.expiresAt), [now + 720 * HOUR, null, now + 2 * HOUR, now - 1000, 0], 'Go\'s zero time (year 1) as 1970: expired either way');
      t.same(res.imported.map((k) => k.status), ['active', 'active', 'active', 'expired', 'expired']);
      t.equal(await code(svc.importKeys(JSON.stringify({ key: 'expiry-bad-key-1', subject: 'jo', role: 'basic', expiresAt: 0 }), 'x.jsonl')), 'import-invalid', 'a number is not a date-time');
    });

    await t.test('import: an expiry is an instant with its offset, never the host\'s local time', async (t) => {
      // PostgreSQL's timestamptz text (storj), other offsets, lower-case t and z: all the same instant.
      const at = Date.UTC(2026, 11, 7, 20, 26, 37);
      const forms = ['2026-12-07T20:26:37Z', '2026-12-07 20:26:37+00', '2026-12-07 21:26:37+01:00', '2026-12-07T12:26:37-0800', '2026-12-07t20:26:37.000z'];
      const lines = forms.map((expiresAt, i) => ({ key: `expiry-offset-key-${i}`, subject: 'jo', role: 'basic', expiresAt }));
      await svc.importKeys(lines.map((l) => JSON.stringify(l)).join('\n'), 'offsets.jsonl');
      const stored = await Promise.all(lines.map((l) => store.getKeyBySha256(createHash('sha256').update(l.key).digest('hex'))));
      t.same(stored.map((k) => k?.expiresAt), forms.map(() => at), 'every form is the same instant');
      // Without an offset the instant depends on the host's time zone: refused, not guessed.
      for (const expiresAt of ['2026-12-07 20:26:37', '2026-12-07T20:26:37', 'Jan 31 2027', '2026-12-07']) {
        t.equal(await code(svc.importKeys(JSON.stringify({ key: 'expiry-local-key-1', subject: 'jo', role: 'basic', expiresAt }), 'x.jsonl')), 'import-invalid', `${expiresAt}: refused`);
      }
      t.equal(await store.getKeyBySha256(createHash('sha256').update('expiry-local-key-1').digest('hex')), undefined, 'nothing written');
    });

    await t.test('import: digestOf uuid-bytes takes the digest of the UUID\'s 16 bytes', async (t) => {
      const uuid = '9b2f6c1e-4d7a-4f3b-a1c2-0e5d8f7a6b90';
      const bytesDigest = createHash('sha256').update(Buffer.from(uuid.replaceAll('-', ''), 'hex')).digest('hex');
      const other = '0d9c3e5a-1b2c-4d3e-8f90-a1b2c3d4e5f6';
      const lines = [
        { sha256: bytesDigest, digestOf: 'uuid-bytes', subject: 'kim', role: 'basic' },
        { key: other.toUpperCase(), digestOf: 'uuid-bytes', subject: 'kim', role: 'basic' },
        { key: 'plain-text-key-123', digestOf: 'key', subject: 'kim', role: 'basic' },
      ];
      await svc.importKeys(lines.map((l) => JSON.stringify(l)).join('\n'), 'uuid.jsonl');
      t.equal((await store.getKeyBySha256(bytesDigest))?.subject, 'kim', 'a digest is stored as given');
      const otherDigest = createHash('sha256').update(Buffer.from(other.replaceAll('-', ''), 'hex')).digest('hex');
      t.ok(await store.getKeyBySha256(otherDigest), 'a plaintext UUID is stored as the digest of its bytes, whatever its letter case');
      t.notOk(await store.getKeyBySha256(createHash('sha256').update(other.toUpperCase()).digest('hex')), 'not as the digest of its text');
      const bad = [
        JSON.stringify({ key: other.slice(0, -1), digestOf: 'uuid-bytes', subject: 'kim', role: 'basic' }),
        JSON.stringify({ sha256: bytesDigest, digestOf: 'text', subject: 'kim', role: 'basic' }),
        JSON.stringify({ key: `{${other}}`, digestOf: 'uuid-bytes', subject: 'kim', role: 'basic' }),
      ];
      try {
        await svc.importKeys(bad.join('\n'), 'bad.jsonl');
        t.fail('resolved');
      } catch (err) {
        t.match((err as KeyServiceError).problems, [/^bad\.jsonl:1 "key" must be a UUID/, /^bad\.jsonl:2 "digestOf" must be "key"/, /^bad\.jsonl:3 "key" must be a UUID/]);
      }
    });

    await t.test('import: any bad line imports nothing and every problem is reported', async (t) => {
      const before = (await svc.list()).length;
      const good = JSON.stringify({ key: 'fine-legacy-key-1', subject: 'ivy', role: 'basic' });
      const lines = [
        good,                                                                              // 1
        '{not json',                                                                       // 2
        JSON.stringify({ subject: 'ivy', role: 'basic' }),                                 // 3
        JSON.stringify({ key: 'k-1234567', sha256: 'a'.repeat(64), subject: 'ivy', role: 'basic' }), // 4
        JSON.stringify({ sha256: 'A'.repeat(64), subject: 'ivy', role: 'basic' }),         // 5
        JSON.stringify({ key: 'another-key-1', subject: 'ivy', role: 'root' }),            // 6
        JSON.stringify({ key: 'another-key-2', subject: 'ivy', role: 'basic', extra: 1 }), // 7
        JSON.stringify({ key: 'pcl_looks_native', subject: 'ivy', role: 'basic' }),        // 8
        JSON.stringify({ key: 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln', subject: 'ivy', role: 'basic' }), // 9
        JSON.stringify({ key: 'host:443:secret', subject: 'ivy', role: 'basic' }),         // 10
        JSON.stringify({ key: 'another-key-3', subject: 'ivy', role: 'basic', expiresAt: 'tomorrow' }), // 11
        JSON.stringify({ key: 'another-key-4', subject: 'ivy', role: 'basic', digestOf: 'uuid-bytes' }), // 12
        good,                                                                              // 13
        '[]',                                                                              // 14
        JSON.stringify({ key: 'another-key-5', role: 'basic', scopes: 'a,b' }),            // 15
      ];
      try {
        await svc.importKeys(lines.join('\n'), 'in.jsonl');
        t.fail('resolved');
      } catch (err) {
        t.equal((err as KeyServiceError).code, 'import-invalid');
        const problems = (err as KeyServiceError).problems;
        const want = [
          /^in\.jsonl:2 invalid JSON/,
          /^in\.jsonl:3 exactly one of "key" or "sha256" is required$/,
          /^in\.jsonl:4 exactly one of "key" or "sha256" is required$/,
          /^in\.jsonl:5 "sha256" must be 64 lowercase hex characters$/,
          /^in\.jsonl:6 unknown role "root"/,
          /^in\.jsonl:7 unknown field "extra"$/,
          /^in\.jsonl:8 "key" starts with "pcl_"/,
          /^in\.jsonl:9 "key" looks like a JWT/,
          /^in\.jsonl:10 "key" contains ":"/,
          /^in\.jsonl:11 "expiresAt" must be an RFC 3339 date-time with its offset/,
          /^in\.jsonl:12 "key" must be a UUID .* with "digestOf": "uuid-bytes"$/,
          /^in\.jsonl:13 duplicate key \(same as line 1\)$/,
          /^in\.jsonl:14 expected a JSON object$/,
          /^in\.jsonl:15 "subject" must be a non-empty string$/,
          /^in\.jsonl:15 "scopes" must be an array of strings$/,
        ];
        t.equal(problems.length, want.length, problems.join('\n'));
        for (const [i, re] of want.entries()) t.match(problems[i], re);
      }
      t.equal((await svc.list()).length, before, 'nothing imported');
      t.equal(await code(svc.importKeys('\n\n', 'empty.jsonl')), 'import-invalid', 'an empty file is refused');
    });

    await t.test('refresh whose announcement fails spends nothing: its retry refreshes, the family lives', async (t) => {
      let down = true;
      const announced: KeyRevocationEvent[] = [];
      const flaky = new KeyService({
        store, config, clock, roles: ['basic'],
        onRevoke: (e) => {
          if (down) throw new Error('Redis unreachable');
          announced.push(e);
        },
      });
      const c = await svc.create({ subject: 'nina', role: 'basic', refreshable: true });
      await t.rejects(flaky.refresh(c.refreshToken!), /Redis unreachable/, 'the refresh fails with the announcement');
      const after = await store.getKey(c.id);
      t.same([after?.revokedAt, after?.refreshSpentAt, after?.successorId], [null, null, null], 'nothing was spent or revoked');
      down = false;
      const r = await flaky.refresh(c.refreshToken!);
      t.ok(r.key, 'the retry refreshes');
      t.same(announced.map((e) => e.kind === 'key' && [e.keyId, e.reason]), [[c.id, 'refresh']], 'and announces the old key\'s end');
      t.equal((await store.getKey(r.id))?.revokedAt, null, 'the new key works: no family revocation');
    });

    await t.test('refresh: exchange, replay revokes the family, refusals', async (t) => {
      events.length = 0;
      const c = await svc.create({ subject: 'jack', role: 'basic', scopes: ['s'], refreshable: true });
      t.ok(c.refreshToken && parseRefreshToken(c.refreshToken, 'pcl')?.id === c.id, 'refresh token names its key');
      t.equal(c.expiresAt, clock.now() + config.refresh.keyTtl, 'refreshable keys are short-lived');
      t.equal(c.refreshExpiresAt, clock.now() + config.refresh.tokenTtl);
      clock.advance(60_000);
      const r1 = await svc.refresh(c.refreshToken!);
      t.equal(parseKey(r1.key, 'pcl')?.id, r1.id);
      t.equal(r1.expiresAt, clock.now() + config.refresh.keyTtl);
      const n1 = await store.getKey(r1.id);
      t.same([n1?.subject, n1?.scopes, n1?.familyId], ['jack', ['s'], c.id], 'same grants, same family');
      const old = await store.getKey(c.id);
      t.ok(old?.revokedAt !== null && old?.refreshSpentAt !== null, 'old key and token revoked');
      t.same(events.map((e) => e.kind === 'key' && e.reason), ['refresh']);

      const r2 = await svc.refresh(r1.refreshToken);
      t.ok(r2.id);
      events.length = 0;
      t.equal(await code(svc.refresh(c.refreshToken!)), 'refresh-invalid', 'replaying a spent token is refused');
      t.equal((await store.getKey(r2.id))?.revokedAt, clock.now(), 'and revokes the live key of the family');
      t.same(events.map((e) => e.kind === 'key' && [e.keyId, e.reason]), [[r2.id, 'family']]);
      t.equal(await code(svc.refresh(r2.refreshToken)), 'refresh-invalid', 'the family is dead');

      t.equal(await code(svc.refresh('pcl_rt_garbage')), 'refresh-invalid', 'malformed');
      const d = await svc.create({ subject: 'kate', role: 'basic', refreshable: true });
      const p = parseRefreshToken(d.refreshToken!, 'pcl')!;
      const { generateRefreshToken } = await import('../../src/keys/format.js');
      const forged = generateRefreshToken('pcl', p.id);
      t.equal(await code(svc.refresh(forged.key)), 'refresh-invalid', 'wrong secret for a real key id');
      clock.advance(config.refresh.tokenTtl + 1);
      t.equal(await code(svc.refresh(d.refreshToken!)), 'refresh-invalid', 'expired refresh token');
      const e = await svc.create({ subject: 'liam', role: 'basic', refreshable: true });
      clock.advance(1);
      await store.insertSubjectRevocation({ subject: 'liam', scope: 'all', revokedBefore: clock.now(), at: clock.now() });
      t.equal(await code(svc.refresh(e.refreshToken!)), 'refresh-invalid', 'a subject-wide revocation stops refresh tokens');
      const f = await svc.create({ subject: 'mia', role: 'basic', refreshable: true });
      await svc.revokeSubject('mia');
      t.equal(await code(svc.refresh(f.refreshToken!)), 'refresh-invalid', 'keys revoke --subject stops them too');
    });

    await t.test('refresh from an address the key is not allowed at: refused before anything is spent', async (t) => {
      // The successor keeps the allowed addresses: refreshed from elsewhere it could not be
      // used there, and the token would have been spent for a useless key.
      const c = await svc.create({ subject: 'kate', role: 'basic', refreshable: true, allowIps: ['198.51.100.7/32'] });
      t.equal(await code(svc.refresh(c.refreshToken!, '203.0.113.20')), 'refresh-invalid', 'from elsewhere: refused');
      const kept = await store.getKey(c.id);
      t.same([kept?.revokedAt, kept?.refreshSpentAt, kept?.successorId], [null, null, null], 'nothing spent, nothing revoked');
      const r = await svc.refresh(c.refreshToken!, '::ffff:198.51.100.7');
      t.same((await store.getKey(r.id))?.allowedIps, ['198.51.100.7/32'], 'from an allowed address (IPv4-mapped too): refreshed, same binding');
      const open = await svc.create({ subject: 'kate', role: 'basic', refreshable: true });
      t.ok((await svc.refresh(open.refreshToken!, '203.0.113.20')).key, 'a key without allowed addresses refreshes from anywhere');
    });

    await t.test('refresh: a store failure is store-unavailable', async (t) => {
      const other = await open();
      await other.migrate();
      const s2 = new KeyService({ store: other, config, clock });
      const c = await s2.create({ subject: 'z', role: 'basic', refreshable: true });
      await other.close();
      t.equal(await code(s2.refresh(c.refreshToken!)), 'store-unavailable');
    });
  }).then(() => undefined);
}

await suite(t, 'SQLite (memory)', () => openStore('sqlite://memory'));
const url = await tempPgDatabase(t);
if (url !== undefined) await suite(t, 'PostgreSQL', () => openStore(url, { poolSize: 4 }));
