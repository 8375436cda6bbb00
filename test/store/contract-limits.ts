import type { Test } from 'tap';
import type { KeyStore } from '../../src/store/types.js';
import { collect, newKey, uid } from './contract.js';

const T0 = Date.UTC(2030, 0, 1, 12, 0, 0, 123);

/** The KeyStore contract for per-key rate limits and usage credits (run by {@link storeContract}). */
export async function limitsContract(t: Test, store: KeyStore): Promise<void> {
  await t.test('a key stores its rate limit and its lineage credits', async (t) => {
    const k = newKey({ rateLimit: { limit: 100, window: 60_000 }, uses: 5 });
    await store.insertKey(k);
    const got = await store.getKey(k.id);
    t.same([got?.rateLimit, got?.remaining], [{ limit: 100, window: 60_000 }, 5]);
    const plain = newKey();
    await store.insertKey(plain);
    t.same([(await store.getKey(plain.id))?.rateLimit, (await store.getKey(plain.id))?.remaining], [null, null], 'none: unlimited');
    const listed = (await store.listKeys({ subject: k.subject }))[0];
    t.equal(listed?.remaining, 5, 'listKeys shows the credits');
    const batch = newKey({ subject: k.subject, uses: 2 });
    await store.insertKeys([batch]);
    t.equal((await store.listKeys({ subject: k.subject })).find((r) => r.id === batch.id)?.remaining, 2, 'insertKeys sets credits too');
  });

  await t.test('spendUses gives what is left, exactly, and never below zero', async (t) => {
    const k = newKey({ uses: 5 });
    await store.insertKey(k);
    const free = uid('lin');
    const got = await store.spendUses(new Map([[k.id, 3], [free, 7]]));
    t.same([got.get(k.id), got.get(free)], [3, 7], 'a lineage without credits is unlimited');
    t.same((await store.spendUses(new Map([[k.id, 4]]))).get(k.id), 2, 'only what is left');
    t.same((await store.spendUses(new Map([[k.id, 1]]))).get(k.id), 0, 'then none');
    t.equal((await store.getKey(k.id))?.remaining, 0);
    t.same(await store.spendUses(new Map()), new Map());
  });

  await t.test('concurrent spends never give more than there was', async (t) => {
    const k = newKey({ uses: 50 });
    await store.insertKey(k);
    const all = await Promise.all(Array.from({ length: 20 }, () => store.spendUses(new Map([[k.id, 4]]))));
    t.equal(all.reduce((n, m) => n + m.get(k.id)!, 0), 50, 'exactly the credits, across 20 racing batches');
    t.equal((await store.getKey(k.id))?.remaining, 0);
  });

  await t.test('successors share the lineage credits; updateKey sets, refills and removes them', async (t) => {
    const old = newKey({ rateLimit: { limit: 10, window: 1000 } });
    await store.insertKey(old);
    const next = newKey({ subject: old.subject, familyId: old.id, rateLimit: { limit: 10, window: 1000 } });
    await store.rotateKey(old.id, next, T0 + 10, T0 + 3_600_000);
    const c = await collect(store, ['changed']);
    t.teardown(c.stop);
    const u = await store.updateKey(next.id, { role: 'basic', scopes: [], expiresAt: null, uses: 3 });
    t.equal(u?.remaining, 3, 'returns the new credits');
    t.same(u?.rateLimit, { limit: 10, window: 1000 }, 'a rate limit left out is unchanged');
    t.equal((await store.getKey(old.id))?.remaining, 3, 'the rotated key in its grace shares them');
    await c.wait(2);
    t.same(c.notices.map((n) => n.kind === 'changed' && n.id).sort(), [old.id, next.id].sort(), 'every working key of the lineage is announced');
    t.equal((await store.spendUses(new Map([[old.id, 5]]))).get(old.id), 3, 'one counter for the lineage');
    t.equal((await store.updateKey(next.id, { role: 'basic', scopes: [], expiresAt: null, uses: 2 }))?.remaining, 2, 'refilled');
    const none = await store.updateKey(next.id, { role: 'basic', scopes: [], expiresAt: null, rateLimit: null, uses: null });
    t.same([none?.rateLimit, none?.remaining], [null, null], 'removed: unlimited, no rate limit');
    t.equal((await store.spendUses(new Map([[old.id, 9]]))).get(old.id), 9);
  });
}
