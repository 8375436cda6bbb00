import t from 'tap';
import pg from 'pg';
import { PgNotifyRevocationStore } from '../../src/revocation/pg-notify.js';
import type { WireMessage } from '../../src/revocation/support.js';
import type { InvalidationEvent, RevocationStore } from '../../src/revocation/types.js';
import { propagation, revocationContract } from './contract.js';
import { CI, createDatabase, randomTag, recordingLogger, serviceAvailable, sleep, TableSource } from './helpers.js';

/** A NOTIFY payload as another instance sends it. */
function revocationPayload(
  ev: { kind: 'id'; revocationId: string; until?: number | undefined } | { kind: 'subject'; subject: string; before: number; until?: number | undefined },
): string {
  const m: WireMessage = ev.kind === 'id'
    ? { v: 1, kind: 'id', revocationId: ev.revocationId, until: ev.until ?? null }
    : { v: 1, kind: 'subject', subject: ev.subject, before: ev.before, until: ev.until ?? null };
  return JSON.stringify(m);
}

const missing = await serviceAvailable('postgres');
if (missing !== undefined) {
  if (CI) t.fail(missing);
  else t.plan(0, `skipping: ${missing}`);
} else {
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown) => void unhandled.push(e);
  process.on('unhandledRejection', onUnhandled);

  const db = await createDatabase();
  const source = new TableSource(db.url);
  await source.migrate();
  const channel = `pcl_rev_${randomTag()}`;
  const admin = new pg.Client({ connectionString: db.url });
  await admin.connect();
  const stores: RevocationStore[] = [];
  t.teardown(async () => {
    for (const s of stores) await s.close();
    await admin.end();
    await source.close();
    await db.drop();
    process.off('unhandledRejection', onUnhandled);
  });
  const open = (extra: Partial<ConstructorParameters<typeof PgNotifyRevocationStore>[0]> = {}) => {
    const s = new PgNotifyRevocationStore({ connectionString: db.url, source, channel, logger: recordingLogger(), expiryGraceMs: 0, ...extra });
    stores.push(s);
    return s;
  };
  const waitEvent = (s: RevocationStore, match: (ev: InvalidationEvent) => boolean, ms = 2_000) =>
    new Promise<number | undefined>((resolve) => {
      const timer = setTimeout(() => {
        off();
        resolve(undefined);
      }, ms);
      const off = s.onInvalidate((ev) => {
        if (match(ev)) {
          clearTimeout(timer);
          off();
          resolve(performance.now());
        }
      });
    });

  await t.test('contract: pg-notify', (t) =>
    revocationContract(t, {
      name: 'pg-notify',
      shared: true,
      synchronous: true,
      open: async ({ expiryGraceMs }) => open({ expiryGraceMs }),
    }),
  );

  await t.test('loads the durable record at start', async (t) => {
    const until = Date.now() + 60_000;
    await source.recordId('key:stored', until);
    await source.recordId('key:stored-expired', Date.now() - 1_000);
    await source.recordSubject('erin', 5_000);
    const s = open();
    t.throws(() => s.isRevoked({ revocationId: 'key:stored', subject: 'x', issuedAt: 0 }), { code: 'revocation-unavailable' },
      'before the load completes a check cannot be answered (deny)');
    t.ok(await s.waitReady(5_000));
    t.equal(s.isRevoked({ revocationId: 'key:stored', subject: 'x', issuedAt: 0 }), true, 'stored id revocation');
    t.equal(s.isRevoked({ revocationId: 'key:stored-expired', subject: 'x', issuedAt: 0 }), false, 'expired one not loaded');
    t.equal(s.isRevoked({ revocationId: 'k', subject: 'erin', issuedAt: 4_999 }), true, 'stored subject revocation');
    t.equal(s.isRevoked({ revocationId: 'k', subject: 'erin', issuedAt: 5_000 }), false);
  });

  await t.test('a NOTIFY from another connection reaches the instance', async (t) => {
    const s = open();
    t.ok(await s.waitReady(5_000));
    const id = `jti:iss:${randomTag()}`;
    const heard = waitEvent(s, (ev) => ev.kind === 'id' && ev.revocationId === id);
    const t0 = performance.now();
    await admin.query('SELECT pg_notify($1, $2)', [channel, revocationPayload({ kind: 'id', revocationId: id, until: Date.now() + 60_000 })]);
    const at = await heard;
    t.ok(at !== undefined, 'listener fired');
    if (at !== undefined) {
      propagation.push({ backend: 'pg-notify (raw NOTIFY)', kind: 'id', ms: at - t0 });
      t.ok(at - t0 < 100, `within 100 ms (${(at - t0).toFixed(2)} ms)`);
    }
    t.equal(s.isRevoked({ revocationId: id, subject: 'x', issuedAt: 0 }), true, 'and the credential is revoked');

    const heardSubject = waitEvent(s, (ev) => ev.kind === 'subject' && ev.subject === 'frank');
    await admin.query(`NOTIFY ${channel}, '${revocationPayload({ kind: 'subject', subject: 'frank', before: 10_000 })}'`);
    t.ok(await heardSubject, 'a NOTIFY statement works as well as pg_notify()');
    t.equal(s.isRevoked({ revocationId: 'k', subject: 'frank', issuedAt: 9_999 }), true);
  });

  await t.test('malformed notifications are ignored and logged', async (t) => {
    const logger = recordingLogger();
    const s = open({ logger });
    t.ok(await s.waitReady(5_000));
    for (const bad of ['not json', '{"kind":"id"}', '{"kind":"subject","subject":"x"}', '{"kind":"id","revocationId":"a","until":"soon"}', '[]']) {
      await admin.query('SELECT pg_notify($1, $2)', [channel, bad]);
    }
    const id = `key:${randomTag()}`;
    const heard = waitEvent(s, (ev) => ev.kind === 'id' && ev.revocationId === id);
    await admin.query('SELECT pg_notify($1, $2)', [channel, revocationPayload({ kind: 'id', revocationId: id })]);
    t.ok(await heard, 'a good one after them still arrives');
    t.equal(logger.lines.filter((l) => /malformed/.test(l.msg ?? '')).length, 5, 'each bad payload logged');
    t.equal(s.isRevoked({ revocationId: 'a', subject: 'x', issuedAt: 0 }), false, 'nothing applied from them');
  });

  await t.test('a database that cannot be reached', async (t) => {
    const u = new URL(db.url);
    u.port = '1';
    const denyLog = recordingLogger();
    const deny = new PgNotifyRevocationStore({ connectionString: u.toString(), source, channel, logger: denyLog, connectTimeoutMs: 500 });
    const allowLog = recordingLogger();
    const allow = new PgNotifyRevocationStore({ connectionString: u.toString(), source, channel, logger: allowLog, onError: 'allow', connectTimeoutMs: 500 });
    stores.push(deny, allow);
    await sleep(200);
    t.equal(deny.ready(), false, 'not ready');
    t.throws(() => deny.isRevoked({ revocationId: 'k', subject: 's', issuedAt: 0 }), { code: 'revocation-unavailable', headers: { 'retry-after': '1' } }, 'deny: revocation-unavailable');
    t.equal(allow.isRevoked({ revocationId: 'k', subject: 's', issuedAt: 0 }), false, 'allow: answers from the local set');
    await allow.revoke('key:local', undefined).catch(() => {});
    t.equal(allow.isRevoked({ revocationId: 'key:local', subject: 's', issuedAt: 0 }), true, 'allow: the local set still counts');
    t.ok(allowLog.lines.some((l) => l.level === 'error' && /SERVING FROM LOCAL SET/.test(l.msg ?? '')), 'allow: logged loudly');
    t.ok(denyLog.lines.some((l) => /connect failed/.test(l.msg ?? '')), 'connect failures logged');
    await t.rejects(deny.revoke('key:x', undefined), { code: 'revocation-unavailable' }, 'announcing fails with revocation-unavailable');
  });

  await t.test('listener killed: reconnect and catch up', async (t) => {
    const app = `pcl-t-listener-${randomTag()}`;
    const logger = recordingLogger();
    const a = open({ applicationName: app, logger, minBackoffMs: 400, staleAfterMs: 50 });
    const b = open();
    t.ok(await a.waitReady(5_000));
    t.ok(await b.waitReady(5_000));
    const caught: InvalidationEvent[] = [];
    a.onInvalidate((ev) => caught.push(ev));

    const killed = await admin.query('SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = $1', [app]);
    t.equal(killed.rowCount, 1, 'the listener backend was terminated');
    const tKill = performance.now();
    for (let i = 0; i < 200 && a.ready(); i++) await sleep(5);
    t.equal(a.ready(), false, `the loss is noticed (${(performance.now() - tKill).toFixed(0)} ms)`);
    t.equal(a.isRevoked({ revocationId: 'k', subject: 's', issuedAt: 0 }), false, 'right after the loss, checks answer from the set');
    await sleep(60);
    t.throws(() => a.isRevoked({ revocationId: 'k', subject: 's', issuedAt: 0 }), { code: 'revocation-unavailable' },
      'once stale, deny mode refuses');

    // Written to the durable store while the listener is away, and announced: a cannot hear the announcement.
    const missedId = `key:missed-${randomTag()}`;
    await source.recordId(missedId, Date.now() + 60_000);
    await admin.query('SELECT pg_notify($1, $2)', [channel, revocationPayload({ kind: 'id', revocationId: missedId, until: Date.now() + 60_000 })]);
    const cut = Date.now();
    await source.recordSubject('gina', cut);
    t.equal(source.changedSinceCalls.length, 0, 'no catch-up read yet');
    for (let i = 0; i < 100 && !b.isRevoked({ revocationId: missedId, subject: 's', issuedAt: 0 }); i++) await sleep(5);
    t.equal(b.isRevoked({ revocationId: missedId, subject: 's', issuedAt: 0 }), true, 'a connected instance heard it');

    t.ok(await a.waitReady(5_000), 'reconnects by itself');
    const reconnectMs = performance.now() - tKill;
    t.equal(source.changedSinceCalls.length, 1, 'one catch-up read');
    t.equal(a.isRevoked({ revocationId: missedId, subject: 's', issuedAt: 0 }), true, 'the catch-up read picked up the missed revocation');
    t.equal(a.isRevoked({ revocationId: 'k', subject: 'gina', issuedAt: cut - 1 }), true, 'and the missed subject revocation');
    t.ok(caught.some((e) => e.kind === 'id' && e.revocationId === missedId), 'listeners heard the caught-up revocation');
    t.ok(caught.some((e) => e.kind === 'all'), 'and were told to drop every cached identity: changes that are not revocations leave nothing to catch up from');
    t.ok(logger.lines.some((l) => /connection lost/.test(l.msg ?? '')) && logger.lines.some((l) => /caught up/.test(l.msg ?? '')), 'loss and catch-up logged');

    const after = `key:after-${randomTag()}`;
    const heard = waitEvent(a, (ev) => ev.kind === 'id' && ev.revocationId === after);
    const t0 = performance.now();
    await b.revoke(after, undefined);
    const at = await heard;
    t.ok(at !== undefined, 'LISTEN is back: a new revocation arrives');
    const line = `pg-notify: listener loss noticed, reconnected and caught up ${reconnectMs.toFixed(0)} ms after pg_terminate_backend (min backoff 400 ms); ` +
      `next revocation arrived in ${at === undefined ? 'n/a' : (at - t0).toFixed(2)} ms`;
    console.log(line);
    t.comment(line);
  });

  await t.test('no unhandled rejections', async (t) => {
    t.equal(unhandled.length, 0);
  });

  t.teardown(() => {
    for (const p of propagation) console.log(`propagation ${p.backend} ${p.kind}: ${p.ms.toFixed(3)} ms`);
  });
}
