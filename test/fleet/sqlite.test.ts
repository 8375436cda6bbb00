import t from 'tap';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { DatabaseSync } from 'node:sqlite';
import { startUpstream } from '../helpers/upstream.js';
import { call, cli, cliJson, fleetConfig, startFleet, stopFleet } from './helpers.js';
import { checkLateInstance, propagationSuite, summary, type AnnouncementLog } from './propagation.js';

// Two gateway processes and the CLI on one SQLite file, no Redis: each gateway keeps its
// revocation set current by polling the file's notices, so a revocation made by the CLI
// (a third process) is refused by both within SPEC §7's 1 s.

const BOUND_MS = 1_000;

await t.test('a CLI revocation on the shared file reaches both gateways within 1 s', async (t) => {
  const up = await startUpstream();
  t.teardown(() => up.close());
  const dir = await mkdtemp(join(tmpdir(), 'pcl-fleet-sqlite-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'data', 'portcullis.db');
  const yaml = fleetConfig({ store: `sqlite://${file}`, upstream: up.url });
  const configFile = join(dir, 'gateway.config.yaml');
  await writeFile(configFile, yaml);

  const fleet = await startFleet(2, yaml);
  t.teardown(() => stopFleet(fleet));

  // The notices as a reader of the file sees them: the reference point of the figures.
  const announcements: AnnouncementLog = { seen: [] };
  const reader = new DatabaseSync(file, { readOnly: true });
  let cursor = (reader.prepare('SELECT max(seq) AS s FROM notices').get()?.s as number | null) ?? 0;
  const next = reader.prepare('SELECT seq FROM notices WHERE seq > ? ORDER BY seq');
  const watcher = setInterval(() => {
    for (const r of next.all(cursor)) {
      cursor = r.seq as number;
      announcements.seen.push(performance.now());
    }
  }, 5);
  t.teardown(() => {
    clearInterval(watcher);
    reader.close();
  });

  const { figures, revoked, working } = await propagationSuite(t, { backend: 'sqlite', fleet, configFile, announcements, boundMs: BOUND_MS });
  t.comment(summary('sqlite: first 401 after the CLI exited', figures.flatMap((m) => m.afterExit)));

  // What the upstream received: nothing carrying a revoked credential after its refusal.
  const before = up.seen.length;
  for (const inst of fleet) {
    for (const r of revoked) {
      const a = await call(inst, '/must-not-pass', { authorization: `Bearer ${r.value}` });
      t.equal(a.status, 401, `${inst.name} refuses the ${r.label}`);
    }
  }
  t.equal(up.seen.slice(before).filter((s) => s.url === '/must-not-pass').length, 0, 'the upstream received none of them');

  // A rotation with a grace ends the old key at the grace's end on both, though they cached it for 60 s.
  const k = cliJson<{ id: string; key: string }>(await cli(configFile, 'keys', 'create', '--subject', 'frank', '--role', 'basic', '--json'));
  for (const inst of fleet) t.equal((await call(inst, '/rot', { authorization: `Bearer ${k.key}` })).status, 200, `${inst.name}: frank's key works and is cached`);
  const rot = await cli(configFile, 'keys', 'rotate', k.id, '--grace', '2s', '--json');
  t.equal(rot.code, 0, `keys rotate ${rot.err}`);
  await new Promise((r) => setTimeout(r, 2_000 + BOUND_MS));
  const seenBefore = up.seen.length;
  for (const inst of fleet) {
    const a = await call(inst, '/rot-after', { authorization: `Bearer ${k.key}` });
    t.equal(a.status, 401, `${inst.name}: the rotated key is refused once its grace is over (${a.code ?? ''})`);
  }
  t.equal(up.seen.slice(seenBefore).length, 0, 'and the upstream saw none of those requests');

  // An import reaches both too: a key they refused a moment ago (and remember refusing) is
  // admitted within 1 s of the CLI returning, and only then does the upstream see it.
  const legacy = `legacy-${randomUUID()}`;
  const seenAtStart = up.seen.length;
  for (const inst of fleet) {
    const a = await call(inst, '/imported', { authorization: `Bearer ${legacy}` });
    t.same([a.status, a.code], [401, 'key-invalid'], `${inst.name}: the key is unknown before the import`);
  }
  t.equal(up.seen.length, seenAtStart, 'the upstream saw none of the refused requests');
  const importFile = join(dir, 'import.jsonl');
  await writeFile(importFile, JSON.stringify({ key: legacy, subject: 'grace', role: 'basic' }) + '\n');
  const imp = await cli(configFile, 'keys', 'import', '--file', importFile, '--json');
  t.equal(imp.code, 0, `keys import ${imp.err}`);
  for (const inst of fleet) {
    let a = await call(inst, '/imported', { authorization: `Bearer ${legacy}` });
    while (a.status !== 200 && performance.now() - imp.exitedAt < BOUND_MS) {
      await new Promise((r) => setTimeout(r, 10));
      a = await call(inst, '/imported', { authorization: `Bearer ${legacy}` });
    }
    const late = performance.now() - imp.exitedAt;
    t.equal(a.status, 200, `${inst.name}: the imported key is admitted within ${BOUND_MS} ms of the import (${late.toFixed(0)} ms)`);
  }
  const admitted = up.seen.slice(seenAtStart).filter((s) => s.url === '/imported');
  t.equal(admitted.length, fleet.length, 'the upstream saw exactly the admitted requests');
  t.ok(admitted.every((s) => s.headers['x-auth-subject'] === 'grace'), 'with the imported key\'s subject');

  // Durable: a gateway started afterwards loads every revocation from the file.
  const late = await startFleet(1, yaml);
  t.teardown(() => stopFleet(late));
  await checkLateInstance(t, late[0]!, revoked, working);
});
