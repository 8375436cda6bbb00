import { randomBytes, createHash } from 'node:crypto';
import type { Test } from 'tap';
import { isStoreError } from '../../src/store/errors.js';
import { limitsContract } from './contract-limits.js';
import { REVOCATION_CHANNEL, type KeyStore, type NewKey, type RevocationNotice } from '../../src/store/types.js';

/** Unique per call, so the suite can share one store between subtests. */
export function uid(prefix = 'k'): string {
  return `${prefix}${randomBytes(6).toString('hex')}`;
}

const T0 = Date.UTC(2030, 0, 1, 12, 0, 0, 123);

export function newKey(over: Partial<NewKey> = {}): NewKey {
  return {
    id: uid(),
    name: null,
    subject: uid('sub'),
    role: 'basic',
    scopes: [],
    audiences: [],
    allowedIps: [],
    secretHash: '$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g',
    sha256: null,
    createdAt: T0,
    notBefore: null,
    expiresAt: T0 + 3_600_000,
    familyId: null,
    refreshHash: null,
    refreshExpiresAt: null,
    ...over,
  };
}

function sha(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

async function rejectsCode(t: Test, p: Promise<unknown>, code: string, msg: string): Promise<void> {
  try {
    await p;
    t.fail(`${msg}: expected StoreError ${code}, resolved`);
  } catch (err) {
    t.ok(isStoreError(err), `${msg}: is a StoreError`);
    t.equal((err as { code?: string }).code, code, msg);
  }
}

/** Collects notices of these kinds (default: revocations) published on the revocation channel. */
export async function collect(store: KeyStore, kinds: ReadonlyArray<RevocationNotice['kind']> = ['key', 'subject', 'token']): Promise<{ notices: RevocationNotice[]; stop: () => Promise<void>; wait: (n: number) => Promise<void> }> {
  const notices: RevocationNotice[] = [];
  let waiter: { n: number; resolve: () => void } | undefined;
  const stop = await store.listen(REVOCATION_CHANNEL, {
    onMessage(payload) {
      const n = JSON.parse(payload) as RevocationNotice;
      if (!kinds.includes(n.kind)) return;
      notices.push(n);
      if (waiter && notices.length >= waiter.n) waiter.resolve();
    },
  });
  const wait = (n: number): Promise<void> =>
    notices.length >= n
      ? Promise.resolve()
      : new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`timed out waiting for ${n} notices, got ${notices.length}`)), 5000);
          waiter = { n, resolve: () => { clearTimeout(timer); resolve(); } };
        });
  return { notices, stop, wait };
}

/**
 * The KeyStore contract: every implementation must pass it against its real backend.
 * `factory` opens a new store; its first call must be on an empty database (not yet
 * migrated). The suite migrates that store and shares it between subtests (every subtest
 * uses its own ids and subjects); later calls may reuse the database.
 */
export function storeContract(t: Test, name: string, factory: () => Promise<KeyStore>): Promise<void> {
  return t.test(`KeyStore contract: ${name}`, async (t) => {
    const store = await factory();
    t.teardown(() => store.close());

    await t.test('migrate applies every migration once, idempotently, also concurrently', async (t) => {
      const first = await store.migrate();
      t.same(first.applied, ['001_initial', '002_key_limits'], 'first run applies every migration in order');
      t.same(first.current, ['001_initial', '002_key_limits']);
      const [a, b] = await Promise.all([store.migrate(), store.migrate()]);
      t.same(a.applied, [], 'nothing left to apply');
      t.same(b.applied, []);
      t.same(b.current, ['001_initial', '002_key_limits']);
      await store.ping();
    });

    await t.test('insert and read back every field', async (t) => {
      const k = newKey({
        name: 'ci',
        scopes: ['films:read', 'reviews:write'],
        audiences: ['my-api'],
        allowedIps: ['10.0.0.0/8', '2001:db8::/32'],
        notBefore: T0 + 60_000,
        familyId: 'fam1',
        refreshHash: '$argon2id$refresh',
        refreshExpiresAt: T0 + 86_400_000,
      });
      await store.insertKey(k);
      const got = await store.getKey(k.id);
      t.same(got, { ...k, lastUsedAt: null, revokedAt: null, successorId: null, graceUntil: null, refreshSpentAt: null, rateLimit: null, remaining: null });
      t.equal(got?.createdAt, T0, 'milliseconds survive the round trip');
      t.equal(await store.getKey(uid()), undefined, 'unknown id');
    });

    await t.test('constraints surface as conflict', async (t) => {
      const k = newKey();
      await store.insertKey(k);
      await rejectsCode(t, store.insertKey({ ...k }), 'conflict', 'duplicate id');
      const digest = sha(uid());
      await store.insertKey(newKey({ secretHash: null, sha256: digest }));
      await rejectsCode(t, store.insertKey(newKey({ secretHash: null, sha256: digest })), 'conflict', 'duplicate legacy digest');
      await rejectsCode(t, store.insertKey(newKey({ secretHash: null, sha256: null })), 'conflict', 'neither hash nor digest');
      await rejectsCode(t, store.insertKey(newKey({ secretHash: null, sha256: 'ABC' })), 'conflict', 'digest not lowercase hex');
    });

    await t.test('legacy lookup by digest; existingSha256', async (t) => {
      const d1 = sha(uid());
      const d2 = sha(uid());
      const k = newKey({ secretHash: null, sha256: d1, expiresAt: null });
      await store.insertKey(k);
      t.equal((await store.getKeyBySha256(d1))?.id, k.id);
      t.equal(await store.getKeyBySha256(d2), undefined);
      t.same(await store.existingSha256([d1, d2]), [d1]);
      t.same(await store.existingSha256([]), []);
    });

    await t.test('insertKeys is all or nothing, and announces what it added', async (t) => {
      const c = await collect(store, ['added']);
      t.teardown(c.stop);
      const subject = uid('sub');
      const existing = newKey({ subject });
      await store.insertKey(existing);
      const batch = [newKey({ subject }), newKey({ subject }), { ...existing }];
      await rejectsCode(t, store.insertKeys(batch), 'conflict', 'a duplicate in the batch fails it');
      t.equal((await store.listKeys({ subject })).length, 1, 'no key of the failed batch was stored');
      await store.insertKeys(batch.slice(0, 2));
      t.equal((await store.listKeys({ subject })).length, 3);
      await c.wait(1);
      t.same(c.notices[0], { kind: 'added', count: 2 }, 'the committed batch is announced, the failed one is not');
    });

    await t.test('listKeys filters by subject, oldest first', async (t) => {
      const subject = uid('sub');
      const a = newKey({ subject, createdAt: T0 + 2 });
      const b = newKey({ subject, createdAt: T0 + 1 });
      await store.insertKey(a);
      await store.insertKey(b);
      await store.insertKey(newKey());
      t.same((await store.listKeys({ subject })).map((k) => k.id), [b.id, a.id]);
      const all = await store.listKeys();
      t.ok(all.length >= 3 && all.some((k) => k.subject !== subject), 'without a filter: every key');
    });

    await t.test('revokeKey: once, idempotent, notified', async (t) => {
      const c = await collect(store);
      t.teardown(c.stop);
      const k = newKey();
      await store.insertKey(k);
      const first = await store.revokeKey(k.id, T0 + 10);
      t.equal(first?.changed, true);
      t.equal(first?.key.revokedAt, T0 + 10);
      const again = await store.revokeKey(k.id, T0 + 20);
      t.equal(again?.changed, false, 'second revoke changes nothing');
      t.equal(again?.key.revokedAt, T0 + 10, 'first revocation time kept');
      t.equal(await store.revokeKey(uid(), T0), undefined, 'unknown id');
      await c.wait(1);
      t.same(c.notices.filter((n) => n.kind === 'key' && n.id === k.id), [
        { kind: 'key', id: k.id, revocationId: `key:${k.id}`, subject: k.subject, at: T0 + 10, expiresAt: k.expiresAt },
      ]);
    });

    await t.test('revokeSubjectKeys by name (replace) and subject-wide', async (t) => {
      const c = await collect(store);
      t.teardown(c.stop);
      const subject = uid('sub');
      const ci1 = newKey({ subject, name: 'ci' });
      const ci2 = newKey({ subject, name: 'ci' });
      const other = newKey({ subject, name: 'deploy' });
      const unnamed = newKey({ subject });
      const legacy = newKey({ subject, name: 'ci', secretHash: null, sha256: sha(uid()) });
      await store.insertKeys([ci1, ci2, other, unnamed, legacy]);
      const replaced = await store.revokeSubjectKeys(subject, T0 + 5, { name: 'ci', exceptId: ci2.id });
      t.same(replaced.map((r) => r.id).sort(), [ci1.id, legacy.id].sort(), 'same name, except the new one');
      t.equal(replaced.find((r) => r.id === legacy.id)?.revocationId, `legacy:${legacy.sha256}`);
      t.same(await store.getSubjectRevocations(subject), [], 'replacing records no subject-wide revocation');
      const unnamedOnly = await store.revokeSubjectKeys(subject, T0 + 6, { name: null });
      t.same(unnamedOnly.map((r) => r.id), [unnamed.id], 'name null matches unnamed keys');

      const all = await store.revokeSubjectKeys(subject, T0 + 7);
      t.same(all.map((r) => r.id).sort(), [ci2.id, other.id].sort(), 'subject-wide: the rest');
      const subs = await store.getSubjectRevocations(subject);
      t.same(subs.map((s) => [s.scope, s.revokedBefore]), [['keys', T0 + 7]]);
      await c.wait(4);
      const mine = c.notices.filter((n) => (n.kind === 'key' || n.kind === 'subject') && n.subject === subject);
      t.same(mine.filter((n) => n.kind === 'key').map((n) => (n as { id: string }).id).sort(), [ci1.id, legacy.id, unnamed.id].sort());
      t.same(mine.filter((n) => n.kind === 'subject'), [{ kind: 'subject', subject, scope: 'keys', revokedBefore: T0 + 7, at: T0 + 7 }]);
    });

    await t.test('rotateKey: successor, grace, conflicts, immediate', async (t) => {
      const old = newKey({ name: 'svc', scopes: ['a'] });
      await store.insertKey(old);
      const succ = newKey({ subject: old.subject, name: 'svc', scopes: ['a'], createdAt: T0 + 100 });
      await store.rotateKey(old.id, succ, T0 + 100, T0 + 3_700_000);
      const o = await store.getKey(old.id);
      t.equal(o?.successorId, succ.id);
      t.equal(o?.graceUntil, T0 + 3_700_000);
      t.equal(o?.revokedAt, null, 'still working during grace');
      t.ok(await store.getKey(succ.id), 'successor stored');
      await rejectsCode(t, store.rotateKey(old.id, newKey(), T0 + 200, T0 + 300), 'conflict', 'already rotated');
      await rejectsCode(t, store.rotateKey(uid(), newKey(), T0 + 200, T0 + 300), 'conflict', 'unknown key');

      const r2 = newKey();
      await store.insertKey(r2);
      await store.revokeKey(r2.id, T0 + 1);
      const orphan = newKey();
      await rejectsCode(t, store.rotateKey(r2.id, orphan, T0 + 200, T0 + 300), 'conflict', 'revoked key');
      t.equal(await store.getKey(orphan.id), undefined, 'failed rotation inserted nothing');

      const r3 = newKey();
      await store.insertKey(r3);
      await store.rotateKey(r3.id, newKey({ subject: r3.subject }), T0 + 500, T0 + 500);
      t.equal((await store.getKey(r3.id))?.revokedAt, T0 + 500, 'zero grace revokes at once');
    });

    await t.test('rotateKey spends the old refresh token, and only a refreshable one', async (t) => {
      const old = newKey({ familyId: uid('fam'), refreshHash: 'h', refreshExpiresAt: T0 + 10_000 });
      await store.insertKey(old);
      await store.rotateKey(old.id, newKey({ subject: old.subject }), T0 + 100, T0 + 3_700_000);
      t.equal((await store.getKey(old.id))?.refreshSpentAt, T0 + 100, 'spent at the rotation');
      t.equal(await store.refreshKey(old.id, newKey({ subject: old.subject }), T0 + 200), false, 'so it can never refresh');
      t.equal((await store.getKey(old.id))?.revokedAt, null, 'and the grace goes on');
      const plain = newKey();
      await store.insertKey(plain);
      await store.rotateKey(plain.id, newKey({ subject: plain.subject }), T0 + 100, T0 + 3_700_000);
      t.equal((await store.getKey(plain.id))?.refreshSpentAt, null, 'no refresh token, nothing spent');
    });

    await t.test('updateKey changes a working key in place', async (t) => {
      const k = newKey({ scopes: ['a'] });
      await store.insertKey(k);
      const u = await store.updateKey(k.id, { role: 'admin', scopes: ['a', 'b'], expiresAt: null });
      t.same([u?.id, u?.role, u?.scopes, u?.expiresAt, u?.secretHash], [k.id, 'admin', ['a', 'b'], null, k.secretHash], 'new grants, same secret');
      t.same((await store.getKey(k.id))?.scopes, ['a', 'b'], 'stored');
      t.equal((await store.updateKey(k.id, { role: 'basic', scopes: [], expiresAt: T0 + 5 }))?.expiresAt, T0 + 5);
      t.equal(await store.updateKey(uid(), { role: 'basic', scopes: [], expiresAt: null }), undefined, 'unknown id');
      await store.revokeKey(k.id, T0 + 10);
      t.equal(await store.updateKey(k.id, { role: 'admin', scopes: [], expiresAt: null }), undefined, 'a revoked key is not changed');
      t.equal((await store.getKey(k.id))?.role, 'basic');
      const r = newKey();
      await store.insertKey(r);
      await store.rotateKey(r.id, newKey({ subject: r.subject }), T0 + 20, T0 + 3_600_000);
      t.equal(await store.updateKey(r.id, { role: 'admin', scopes: [], expiresAt: null }), undefined, 'nor a rotated one');
    });

    await t.test('revokeNamedKeys: every subject, or one; notified', async (t) => {
      const c = await collect(store);
      t.teardown(c.stop);
      const name = uid('job');
      const a = newKey({ name });
      const b = newKey({ name });
      const legacy = newKey({ name, subject: b.subject, secretHash: null, sha256: sha(uid()) });
      const other = newKey({ name: uid('job'), subject: a.subject });
      await store.insertKeys([a, b, legacy, other]);
      const one = await store.revokeNamedKeys(name, T0 + 5, a.subject);
      t.same(one.map((r) => r.id), [a.id], 'of one subject');
      const rest = await store.revokeNamedKeys(name, T0 + 6);
      t.same(rest.map((r) => r.id).sort(), [b.id, legacy.id].sort(), 'then of every subject');
      t.equal(rest.find((r) => r.id === legacy.id)?.revocationId, `legacy:${legacy.sha256}`);
      t.same(await store.revokeNamedKeys(name, T0 + 7), [], 'nothing left');
      t.equal((await store.getKey(other.id))?.revokedAt, null, 'another name untouched');
      t.same(await store.getSubjectRevocations(a.subject), [], 'no subject-wide revocation');
      await c.wait(3);
      t.same(c.notices.filter((n) => n.kind === 'key' && [a.id, b.id, legacy.id].includes(n.id)).map((n) => (n as { id: string }).id).sort(), [a.id, b.id, legacy.id].sort());
    });

    await t.test('refreshKey spends once; revokeFamily', async (t) => {
      const fam = uid('fam');
      const k1 = newKey({ familyId: fam, refreshHash: 'h1', refreshExpiresAt: T0 + 10_000 });
      await store.insertKey(k1);
      const k2 = newKey({ subject: k1.subject, familyId: fam, refreshHash: 'h2', refreshExpiresAt: T0 + 20_000, createdAt: T0 + 50 });
      t.equal(await store.refreshKey(k1.id, k2, T0 + 50), true);
      const spent = await store.getKey(k1.id);
      t.equal(spent?.refreshSpentAt, T0 + 50);
      t.equal(spent?.revokedAt, T0 + 50);
      const k3 = newKey({ subject: k1.subject, familyId: fam });
      t.equal(await store.refreshKey(k1.id, k3, T0 + 60), false, 'a spent token cannot refresh again');
      t.equal(await store.getKey(k3.id), undefined, 'and nothing was inserted');
      const revoked = await store.revokeFamily(fam, T0 + 70);
      t.same(revoked.map((r) => r.id), [k2.id], 'the live member of the family');
      const k2after = await store.getKey(k2.id);
      t.equal(k2after?.revokedAt, T0 + 70);
      t.equal(k2after?.refreshSpentAt, T0 + 70, 'its refresh token is dead too');
      t.same(await store.revokeFamily(fam, T0 + 80), [], 'nothing left');
    });

    await t.test('touchLastUsed: batched, never backwards', async (t) => {
      const a = newKey();
      const b = newKey();
      await store.insertKeys([a, b]);
      await store.touchLastUsed(new Map([[a.id, T0 + 1000], [b.id, T0 + 2000], [uid(), T0]]));
      t.equal((await store.getKey(a.id))?.lastUsedAt, T0 + 1000);
      t.equal((await store.getKey(b.id))?.lastUsedAt, T0 + 2000);
      await store.touchLastUsed(new Map([[a.id, T0 + 500], [b.id, T0 + 3000]]));
      t.equal((await store.getKey(a.id))?.lastUsedAt, T0 + 1000, 'an older time does not overwrite');
      t.equal((await store.getKey(b.id))?.lastUsedAt, T0 + 3000);
      await store.touchLastUsed(new Map());
    });

    await t.test('revoked keys: since and active', async (t) => {
      const base = T0 + 1_000_000_000;
      const live = newKey({ expiresAt: base + 10_000 });
      const dead = newKey({ expiresAt: base + 100 });
      const forever = newKey({ expiresAt: null });
      await store.insertKeys([live, dead, forever]);
      await store.revokeKey(live.id, base + 50);
      await store.revokeKey(dead.id, base + 50);
      await store.revokeKey(forever.id, base + 60);
      const since = await store.listRevokedKeysSince(base + 55);
      t.same(since.map((r) => r.id), [forever.id]);
      const active = (await store.listActiveRevokedKeys(base + 200)).map((r) => r.id);
      t.ok(active.includes(live.id) && active.includes(forever.id), 'revoked and otherwise still valid');
      t.notOk(active.includes(dead.id), 'expired anyway: not needed');
      const rec = (await store.listRevokedKeysSince(base)).find((r) => r.id === live.id);
      t.same(rec, { id: live.id, revocationId: `key:${live.id}`, subject: live.subject, revokedAt: base + 50, expiresAt: base + 10_000 });
    });

    await t.test('token revocations: upsert, active, since, prune, notified', async (t) => {
      const c = await collect(store);
      t.teardown(c.stop);
      const base = T0 + 2_000_000_000;
      const iss = uid('https://iss/');
      await store.insertTokenRevocation({ id: 'j1', issuer: iss, until: base + 100, createdAt: base });
      await store.insertTokenRevocation({ id: 'j1', issuer: iss, until: base + 50, createdAt: base + 1 });
      await store.insertTokenRevocation({ id: 'j2', issuer: iss, until: base + 10, createdAt: base + 2 });
      await store.insertTokenRevocation({ id: 'j3', issuer: iss, until: base + 10, createdAt: base + 3 });
      await store.insertTokenRevocation({ id: 'j3', issuer: iss, until: null, createdAt: base + 4 });
      const mine = <R extends { issuer: string }>(l: R[]): R[] => l.filter((r) => r.issuer === iss);
      const active = mine(await store.listActiveTokenRevocations(base + 20));
      t.same(active.map((r) => [r.id, r.until]).sort(), [['j1', base + 100], ['j3', null]], 'longer until wins, null wins');
      const since = mine(await store.listTokenRevocationsSince(base + 2));
      t.same(since.map((r) => r.id), ['j2', 'j3']);
      t.ok((await store.pruneTokenRevocations(base + 20)) >= 1, 'pruned the expired one');
      t.same(mine(await store.listTokenRevocationsSince(base)).map((r) => r.id).sort(), ['j1', 'j3']);
      await c.wait(5);
      const n = c.notices.find((x) => x.kind === 'token' && x.issuer === iss);
      t.same(n, { kind: 'token', id: 'j1', issuer: iss, until: base + 100, at: base });
    });

    await t.test('subject revocations: only forward, per scope, since', async (t) => {
      const subject = uid('sub');
      const base = T0 + 3_000_000_000;
      await store.insertSubjectRevocation({ subject, scope: 'tokens', revokedBefore: base + 100, at: base + 100 });
      await store.insertSubjectRevocation({ subject, scope: 'tokens', revokedBefore: base + 50, at: base + 150 });
      await store.insertSubjectRevocation({ subject, scope: 'all', revokedBefore: base + 10, at: base + 10 });
      const got = await store.getSubjectRevocations(subject);
      t.same(got.map((r) => [r.scope, r.revokedBefore, r.updatedAt]), [['all', base + 10, base + 10], ['tokens', base + 100, base + 150]]);
      t.same((await store.listSubjectRevocationsSince(base + 100)).filter((r) => r.subject === subject).map((r) => r.scope), ['tokens']);
      t.ok((await store.listSubjectRevocations()).filter((r) => r.subject === subject).length === 2);
    });

    await t.test('kv', async (t) => {
      const name = uid('kv');
      t.equal(await store.getKv(name), undefined);
      t.equal(await store.setKvIfAbsent(name, 'first', T0), 'first');
      t.equal(await store.setKvIfAbsent(name, 'second', T0), 'first', 'the first value stays');
      await store.setKv(name, 'third', T0);
      t.equal(await store.getKv(name), 'third');
      const racers = await Promise.all([1, 2, 3].map((i) => store.setKvIfAbsent(`${name}r`, `v${i}`, T0)));
      t.equal(new Set(racers).size, 1, 'concurrent setKvIfAbsent agree on one value');
    });

    await t.test('listen and notify', async (t) => {
      const got: string[] = [];
      const stop = await store.listen('pcl_test_channel', { onMessage: (p) => got.push(p) });
      await store.notify('pcl_test_channel', 'hello');
      for (let i = 0; i < 50 && got.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
      t.same(got, ['hello']);
      await stop();
      await store.notify('pcl_test_channel', 'after');
      await new Promise((r) => setTimeout(r, 100));
      t.same(got, ['hello'], 'nothing after unsubscribing');
      await rejectsCode(t, store.notify('Bad Channel', 'x'), 'conflict', 'channel names are checked');
    });

    await limitsContract(t, store);

    await t.test('a closed store refuses with store-unavailable', async (t) => {
      const other = await factory();
      await other.migrate();
      await other.close();
      await other.close();
      await rejectsCode(t, other.getKey('x'), 'store-unavailable', 'after close');
    });
  }).then(() => undefined);
}
