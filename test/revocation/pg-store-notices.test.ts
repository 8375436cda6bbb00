import t, { type Test } from 'tap';
import { randomUUID } from 'node:crypto';
import { KeyService } from '../../src/keys/service.js';
import { formatScopedSubject } from '../../src/revocation/ids.js';
import { PgNotifyRevocationStore } from '../../src/revocation/pg-notify.js';
import type { InvalidationEvent } from '../../src/revocation/types.js';
import { revocationSource } from '../../src/revocation/source.js';
import { openStore } from '../../src/store/open.js';
import { serviceSkip, tempDatabase } from '../helpers/services.js';
import { apiKeysConfig, FAST_HASH } from '../keys/helpers.js';
import { recordingLogger } from './helpers.js';

// The key store's notices on PostgreSQL, heard where gateways hear them: a KeyService on one
// store (with no revocation layer of its own, so only the store's notices can carry a change)
// and, on the same database, the PgNotifyRevocationStore of another instance.

const skip = await serviceSkip('postgres');
if (skip) t.plan(0, `skipping: ${skip}`);
else {
  const db = await tempDatabase();
  t.teardown(() => db.drop());
  const writer = await openStore(db.url, { migrate: true, poolSize: 2 });
  t.teardown(() => writer.close());
  const reader = await openStore(db.url, { poolSize: 2 });
  t.teardown(() => reader.close());
  const svc = new KeyService({ store: writer, config: apiKeysConfig({ hash: FAST_HASH }), roles: ['basic'] });

  const heard = new PgNotifyRevocationStore({ connectionString: db.url, source: revocationSource(reader, { now: () => Date.now() }), logger: recordingLogger() });
  t.teardown(() => heard.close());
  t.ok(await heard.waitReady(5_000), 'the listening instance is in sync');
  const events: InvalidationEvent[] = [];
  heard.onInvalidate((ev) => events.push(ev));

  const until = async (t: Test, what: string, done: () => boolean): Promise<void> => {
    for (let i = 0; i < 200 && !done(); i++) await new Promise((r) => setTimeout(r, 10));
    t.ok(done(), what);
  };
  const ref = (revocationId: string, subject: string) => ({ revocationId, subject, issuedAt: Date.now() - 1_000 });

  await t.test('an import is heard as added', async (t) => {
    const line = JSON.stringify({ key: `legacy-${randomUUID()}`, subject: 'imported', role: 'basic' });
    await svc.importKeys(`${line}\n`, 'import.jsonl');
    await until(t, 'the listening instance hears the import', () => events.some((e) => e.kind === 'added'));
  });

  await t.test('a revoked key is revoked on the listening instance', async (t) => {
    const k = await svc.create({ subject: 'alice', role: 'basic' });
    const id = `key:${k.id}`;
    t.equal(heard.isRevoked(ref(id, formatScopedSubject('keys', 'alice'))), false, 'working before');
    await svc.revoke(k.id);
    await until(t, 'revoked within 2 s', () => heard.isRevoked(ref(id, formatScopedSubject('keys', 'alice'))) === true);
    t.ok(events.some((e) => e.kind === 'id' && e.revocationId === id), 'and its caches told');
  });

  await t.test('a rotation with a grace is a change, not a revocation', async (t) => {
    const k = await svc.create({ subject: 'bob', role: 'basic' });
    const id = `key:${k.id}`;
    events.length = 0;
    await svc.rotate(k.id, 60_000);
    await until(t, 'the old key is evicted', () => events.some((e) => e.kind === 'id' && e.revocationId === id));
    t.equal(heard.isRevoked(ref(id, formatScopedSubject('keys', 'bob'))), false, 'and still working in its grace');
  });

  await t.test('a subject-wide revocation', async (t) => {
    await svc.create({ subject: 'carol', role: 'basic' });
    await svc.revokeSubject('carol');
    const subject = formatScopedSubject('keys', 'carol');
    await until(t, 'every older key of the subject is revoked', () => heard.isRevoked(ref(`key:${randomUUID()}`, subject)) === true);
    t.equal(heard.isRevoked(ref(`key:${randomUUID()}`, formatScopedSubject('tokens', 'carol'))), false, 'its tokens are not');
  });
}
