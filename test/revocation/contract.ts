import { randomUUID } from 'node:crypto';
import type { Test } from 'tap';
import type { InvalidationEvent, RevocationStore, RevocationSubjectRef } from '../../src/revocation/types.js';
import { sleep } from './helpers.js';

/** One backend under the shared contract. */
export interface ContractBackend {
  name: string;
  /** Opens a store instance. Instances opened by one backend share state when `shared`. */
  open(options: { expiryGraceMs: number }): Promise<RevocationStore>;
  /** Whether two opened instances see each other's revocations (false for the in-process set). */
  shared: boolean;
  /** Whether `isRevoked` answers with a plain boolean rather than a Promise. */
  synchronous: boolean;
}

/** Where the invalidation propagation figures go, for the report printed by each test file. */
export const propagation: Array<{ backend: string; kind: string; ms: number }> = [];

function ref(revocationId: string, subject: string, issuedAt: number): RevocationSubjectRef {
  return { revocationId, subject, issuedAt };
}

async function check(store: RevocationStore, r: RevocationSubjectRef): Promise<boolean> {
  return await store.isRevoked(r);
}

/** Polls until `cond` holds or `ms` pass; returns whether it held. */
async function eventually(cond: () => Promise<boolean> | boolean, ms = 1_000): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() > deadline) return false;
    await sleep(5);
  }
}

function nextEvent(store: RevocationStore, match: (ev: InvalidationEvent) => boolean, timeoutMs = 2_000): Promise<{ ev: InvalidationEvent; at: number } | undefined> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      off();
      resolve(undefined);
    }, timeoutMs);
    const off = store.onInvalidate((ev) => {
      if (!match(ev)) return;
      clearTimeout(timer);
      off();
      resolve({ ev, at: performance.now() });
    });
  });
}

/**
 * The behaviour every RevocationStore must have, run against each real backend: the same
 * suite for the in-process set, Redis and PostgreSQL LISTEN/NOTIFY.
 */
export async function revocationContract(t: Test, backend: ContractBackend): Promise<void> {
  const stores: RevocationStore[] = [];
  const open = async (expiryGraceMs = 0) => {
    const s = await backend.open({ expiryGraceMs });
    stores.push(s);
    t.ok(await s.waitReady(5_000), `${backend.name}: store becomes ready`);
    return s;
  };
  t.teardown(async () => {
    for (const s of stores) await s.close();
  });
  const a = await open();
  const b = backend.shared ? await open() : a;

  await t.test('revoke one credential', async (t) => {
    const id = `key:${randomUUID()}`;
    const subject = `sub-${randomUUID()}`;
    const now = Date.now();
    t.equal(await check(a, ref(id, subject, now)), false, 'unknown credential is not revoked');
    const answer = a.isRevoked(ref(id, subject, now));
    t.equal(typeof answer === 'boolean', backend.synchronous, backend.synchronous ? 'answers synchronously' : 'answers with a promise');
    await answer;
    await a.revoke(id, now + 60_000);
    t.equal(await check(a, ref(id, subject, now)), true, 'revoked on the instance that revoked it');
    t.ok(await eventually(() => check(b, ref(id, subject, now))), 'revoked on the other instance');
    t.equal(await check(a, ref(`key:${randomUUID()}`, subject, now)), false, 'another credential of the same subject is untouched');
    const forever = `jti:iss:${randomUUID()}`;
    await a.revoke(forever, undefined);
    t.equal(await check(a, ref(forever, 'x', now)), true, 'revocation without expiry holds');
  });

  await t.test('markers expire at until', async (t) => {
    const id = `key:${randomUUID()}`;
    const now = Date.now();
    await a.revoke(id, now + 250);
    t.equal(await check(a, ref(id, 's', now)), true, 'revoked before until');
    t.ok(await eventually(() => check(b, ref(id, 's', now))), 'other instance sees it before until');
    await sleep(now + 400 - Date.now());
    t.equal(await check(a, ref(id, 's', now)), false, 'forgotten after until');
    t.equal(await check(b, ref(id, 's', now)), false, 'forgotten after until on the other instance');
    const past = `key:${randomUUID()}`;
    await a.revoke(past, Date.now() - 1_000);
    t.equal(await check(a, ref(past, 's', now)), false, 'until already passed: nothing to hold');
  });

  await t.test('expiry grace keeps markers past until', async (t) => {
    const g = await open(60_000);
    const id = `key:${randomUUID()}`;
    const now = Date.now();
    await g.revoke(id, now - 1_000);
    t.equal(await check(g, ref(id, 's', now)), true, 'still revoked within the grace after until');
    const subject = `sub-${randomUUID()}`;
    await g.revokeSubject(subject, now, now - 1_000);
    t.equal(await check(g, ref('x', subject, now - 10)), true, 'subject entry held within the grace');
  });

  await t.test('subject-wide revocation by issuedAt', async (t) => {
    const subject = `sub-${randomUUID()}`;
    const before = Date.now();
    await a.revokeSubject(subject, before);
    const cases: Array<[number, boolean, string]> = [
      [before - 60_000, true, 'issued a minute before'],
      [before - 1, true, 'issued 1 ms before'],
      [before, false, 'issued exactly at the timestamp'],
      [before + 1_000, false, 'issued after'],
    ];
    for (const [issuedAt, want, label] of cases) {
      t.equal(await check(a, ref(`key:${randomUUID()}`, subject, issuedAt)), want, label);
    }
    t.ok(await eventually(() => check(b, ref('k', subject, before - 1))), 'other instance sees the subject revocation');
    t.equal(await check(b, ref('k', subject, before + 1)), false, 'other instance admits later credentials');
    t.equal(await check(a, ref('k', `other-${subject}`, before - 1)), false, 'other subjects untouched');
  });

  await t.test('newer subject timestamp wins', async (t) => {
    const subject = `sub-${randomUUID()}`;
    const t1 = Date.now() - 10_000;
    const t2 = Date.now();
    await a.revokeSubject(subject, t2);
    await a.revokeSubject(subject, t1);
    t.equal(await check(a, ref('k', subject, t1 + 5_000)), true, 'an older timestamp written later does not win');
    if (backend.shared) {
      t.ok(await eventually(() => check(b, ref('k', subject, t1 + 5_000))), 'nor on the other instance');
      const s2 = `sub-${randomUUID()}`;
      await Promise.all([a.revokeSubject(s2, t2), b.revokeSubject(s2, t1), b.revokeSubject(s2, t1 - 1)]);
      t.ok(await eventually(async () => (await check(a, ref('k', s2, t1 + 5_000))) && (await check(b, ref('k', s2, t1 + 5_000)))),
        'concurrent writes from two instances: the newest wins on both');
    }
  });

  await t.test('subject entries expire at until, extended by a later until', async (t) => {
    const subject = `sub-${randomUUID()}`;
    const now = Date.now();
    await a.revokeSubject(subject, now, now + 250);
    t.equal(await check(a, ref('k', subject, now - 1)), true, 'revoked before until');
    await sleep(now + 400 - Date.now());
    t.equal(await check(a, ref('k', subject, now - 1)), false, 'forgotten after until');

    const s2 = `sub-${randomUUID()}`;
    const n2 = Date.now();
    await a.revokeSubject(s2, n2, n2 + 250);
    await a.revokeSubject(s2, n2 - 5_000, n2 + 60_000);
    await sleep(n2 + 400 - Date.now());
    t.equal(await check(a, ref('k', s2, n2 - 1)), true, 'the later until keeps the entry, with the newer timestamp');
  });

  await t.test('invalidation listeners', async (t) => {
    const id = `key:${randomUUID()}`;
    const seenOnA: InvalidationEvent[] = [];
    const offA = a.onInvalidate((ev) => seenOnA.push(ev));
    const onB = nextEvent(b, (ev) => ev.kind === 'id' && ev.revocationId === id);
    const start = performance.now();
    await a.revoke(id, Date.now() + 60_000);
    const got = await onB;
    t.ok(got, 'the other instance hears the revocation');
    if (got) {
      const ms = got.at - start;
      propagation.push({ backend: backend.name, kind: 'id', ms });
      t.comment(`${backend.name}: id invalidation reached ${backend.shared ? 'the other instance' : 'the listener'} in ${ms.toFixed(2)} ms`);
      t.ok(ms < 100, `propagation within 100 ms (${ms.toFixed(2)} ms)`);
    }
    await sleep(50);
    t.same(seenOnA.filter((e) => e.kind === 'id' && e.revocationId === id).length, 1, 'the revoking instance hears it exactly once');

    const subject = `sub-${randomUUID()}`;
    const before = Date.now();
    const onB2 = nextEvent(b, (ev) => ev.kind === 'subject' && ev.subject === subject);
    const start2 = performance.now();
    await a.revokeSubject(subject, before);
    const got2 = await onB2;
    t.ok(got2, 'the other instance hears the subject revocation');
    if (got2) {
      const ms = got2.at - start2;
      propagation.push({ backend: backend.name, kind: 'subject', ms });
      t.comment(`${backend.name}: subject invalidation in ${ms.toFixed(2)} ms`);
      t.ok(ms < 100, `propagation within 100 ms (${ms.toFixed(2)} ms)`);
      t.same(got2.ev, { kind: 'subject', subject, before }, 'event carries subject and timestamp');
    }

    offA();
    const n = seenOnA.length;
    await a.revoke(`key:${randomUUID()}`, undefined);
    await sleep(50);
    t.equal(seenOnA.length, n, 'an unsubscribed listener hears nothing more');

    const offThrow = b.onInvalidate(() => {
      throw new Error('listener failure');
    });
    const id3 = `key:${randomUUID()}`;
    const stillHeard = nextEvent(b, (ev) => ev.kind === 'id' && ev.revocationId === id3);
    await a.revoke(id3, undefined);
    t.ok(await stillHeard, 'a throwing listener does not stop the others');
    offThrow();
  });

  await t.test('a changed record is evicted everywhere and revoked nowhere', async (t) => {
    const id = `key:${randomUUID()}`;
    const subject = `sub-${randomUUID()}`;
    const seenOnA: InvalidationEvent[] = [];
    const offA = a.onInvalidate((ev) => seenOnA.push(ev));
    const onB = nextEvent(b, (ev) => ev.kind === 'id' && ev.revocationId === id);
    const start = performance.now();
    await a.evict(id);
    const got = await onB;
    t.ok(got, 'the other instance hears the change');
    if (got) t.ok(got.at - start < 100, `within 100 ms (${(got.at - start).toFixed(2)} ms)`);
    await sleep(50);
    offA();
    t.same(seenOnA.filter((e) => e.kind === 'id' && e.revocationId === id).length, 1, 'the announcing instance hears it exactly once');
    t.equal(await check(a, ref(id, subject, Date.now())), false, 'not revoked on the announcing instance');
    t.equal(await check(b, ref(id, subject, Date.now())), false, 'not revoked on the other instance');
  });

  await t.test('ready and close', async (t) => {
    const s = await open();
    t.equal(s.ready(), true, 'ready once connected and loaded');
    await s.close();
    t.equal(s.ready(), false, 'not ready after close');
    await s.close();
    t.pass('close is idempotent');
  });
}
