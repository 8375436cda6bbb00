import t from 'tap';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serviceSkip, tempDatabase } from '../helpers/services.js';
import { startUpstream } from '../helpers/upstream.js';
import { call, cli, fleetConfig, startFleet, stopFleet } from './helpers.js';

// Two gateway processes on one PostgreSQL database without Redis: a key they refused (and
// remember refusing) is admitted by both within 1 s of `keys import` returning, because the
// import is announced on the channel they listen on.

const BOUND_MS = 1_000;

const skip = await serviceSkip('postgres');
if (skip) t.plan(0, `skipping: ${skip}`);
else {
  await t.test('a key imported through the CLI reaches both gateways within 1 s', async (t) => {
    const db = await tempDatabase();
    t.teardown(() => db.drop());
    const up = await startUpstream();
    t.teardown(() => up.close());
    const dir = await mkdtemp(join(tmpdir(), 'pcl-fleet-import-'));
    t.teardown(() => rm(dir, { recursive: true, force: true }));
    // Refusals are remembered for a minute: longer than the CLI takes to start and import.
    const yaml = `${fleetConfig({ store: db.url, upstream: up.url })}apiKeys: { negativeCacheTtl: 60s }\n`;
    const configFile = join(dir, 'gateway.config.yaml');
    await writeFile(configFile, yaml);

    const fleet = await startFleet(2, yaml);
    t.teardown(() => stopFleet(fleet));

    const legacy = `legacy-${randomUUID()}`;
    const auth = { authorization: `Bearer ${legacy}` };
    const seenAtStart = up.seen.length;
    for (const inst of fleet) {
      for (let i = 0; i < 2; i++) {
        const a = await call(inst, '/imported', auth);
        t.same([a.status, a.code], [401, 'key-invalid'], `${inst.name}: the key is unknown before the import (${i === 0 ? 'refused' : 'refusal cached'})`);
      }
    }
    t.equal(up.seen.length, seenAtStart, 'the upstream saw none of the refused requests');

    const importFile = join(dir, 'import.jsonl');
    await writeFile(importFile, JSON.stringify({ key: legacy, subject: 'imported', role: 'basic' }) + '\n');
    const imp = await cli(configFile, 'keys', 'import', '--file', importFile, '--json');
    t.equal(imp.code, 0, `keys import ${imp.err}`);
    t.comment(`keys import took ${(imp.exitedAt - imp.startedAt).toFixed(0)} ms`);
    for (const inst of fleet) {
      let a = await call(inst, '/imported', auth);
      while (a.status !== 200 && performance.now() - imp.exitedAt < BOUND_MS) {
        await new Promise((r) => setTimeout(r, 10));
        a = await call(inst, '/imported', auth);
      }
      const late = performance.now() - imp.exitedAt;
      t.equal(a.status, 200, `${inst.name}: the imported key is admitted within ${BOUND_MS} ms of the import (${late.toFixed(0)} ms)`);
    }
    const admitted = up.seen.slice(seenAtStart).filter((s) => s.url === '/imported');
    t.equal(admitted.length, fleet.length, 'the upstream saw exactly the admitted requests');
    t.ok(admitted.every((s) => s.headers['x-auth-subject'] === 'imported'), 'with the imported key\'s subject');
  });
}
