import t from 'tap';
import { MemoryRevocationStore } from '../../src/revocation/memory.js';
import { propagation, revocationContract } from './contract.js';
import { recordingLogger } from './helpers.js';

await t.test('contract: memory', (t) =>
  revocationContract(t, {
    name: 'memory',
    shared: false,
    synchronous: true,
    open: async ({ expiryGraceMs }) => new MemoryRevocationStore({ expiryGraceMs }),
  }),
);

/** A clock the test moves by hand, so expiry is checked without sleeping. */
function manualClock(start: number) {
  let now = start;
  return { now: () => now, advance: (ms: number) => void (now += ms) };
}

await t.test('expiry follows the injected clock; sweep drops expired entries', async (t) => {
  const clock = manualClock(1_000_000);
  const s = new MemoryRevocationStore({ clock, expiryGraceMs: 100, sweepIntervalMs: 0 });
  t.teardown(() => s.close());
  await s.revoke('a', 1_000_500);
  await s.revoke('b', undefined);
  await s.revokeSubject('u', 999_000, 1_000_500);
  t.same(s.size, { ids: 2, subjects: 1 });
  clock.advance(599);
  t.equal(s.isRevoked({ revocationId: 'a', subject: 'x', issuedAt: 0 }), true, 'until + grace not reached');
  t.equal(s.isRevoked({ revocationId: 'z', subject: 'u', issuedAt: 0 }), true, 'subject until + grace not reached');
  clock.advance(1);
  t.equal(s.sweep(), 2, 'sweep drops the expired id and subject');
  t.same(s.size, { ids: 1, subjects: 0 });
  t.equal(s.isRevoked({ revocationId: 'a', subject: 'u', issuedAt: 0 }), false);
  t.equal(s.isRevoked({ revocationId: 'b', subject: 'u', issuedAt: 0 }), true, 'no until: kept');
});

await t.test('a check that meets an expired entry drops it', async (t) => {
  const clock = manualClock(0);
  const s = new MemoryRevocationStore({ clock, expiryGraceMs: 0, sweepIntervalMs: 0 });
  t.teardown(() => s.close());
  await s.revoke('a', 10);
  clock.advance(10);
  t.equal(s.isRevoked({ revocationId: 'a', subject: 's', issuedAt: 0 }), false);
  t.same(s.size, { ids: 0, subjects: 0 });
});

await t.test('load merges a snapshot, notifying only when asked', async (t) => {
  const s = new MemoryRevocationStore({ expiryGraceMs: 0, sweepIntervalMs: 0, logger: recordingLogger() });
  t.teardown(() => s.close());
  const seen: string[] = [];
  s.onInvalidate((ev) => seen.push(ev.kind === 'id' ? ev.revocationId : ev.kind === 'subject' ? ev.subject : ev.kind === 'added' ? '(added)' : '*'));
  s.load({ ids: [{ revocationId: 'a' }], subjects: [{ subject: 'u', before: 100 }], changed: ['c0'], added: true }, false);
  t.same(seen, [], 'initial load is silent');
  s.load({ ids: [{ revocationId: 'b', until: Date.now() + 60_000 }], subjects: [{ subject: 'v', before: 100 }], changed: ['c1'], added: true }, true);
  t.same(seen, ['b', 'v', 'c1', '(added)'], 'catch-up load notifies: revocations, changed credentials (evicted, not revoked), additions');
  t.equal(s.isRevoked({ revocationId: 'c1', subject: 'q', issuedAt: 0 }), false, 'a changed credential is not revoked');
  t.equal(s.isRevoked({ revocationId: 'a', subject: 'q', issuedAt: 0 }), true);
  t.equal(s.isRevoked({ revocationId: 'q', subject: 'u', issuedAt: 99 }), true);
  t.equal(s.isRevoked({ revocationId: 'q', subject: 'u', issuedAt: 100 }), false);
});

await t.test('the sweep timer does not keep the process alive', async (t) => {
  // getActiveResourcesInfo lists only what keeps the event loop alive: an unref'd timer is absent.
  const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
  const before = timers();
  const s = new MemoryRevocationStore({ sweepIntervalMs: 10 });
  t.teardown(() => s.close());
  t.equal(timers(), before, 'no ref\'d timer added');
  const held = setInterval(() => {}, 10);
  t.equal(timers(), before + 1, 'a ref\'d timer would have shown up');
  clearInterval(held);
});

t.teardown(() => {
  for (const p of propagation) t.comment(`propagation ${p.backend} ${p.kind}: ${p.ms.toFixed(3)} ms`);
});
