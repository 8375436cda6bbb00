import t from 'tap';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRawUpstream } from '../hardening/raw-upstream.js';
import { REDIS_URL, redisPrefix, serviceSkip, tempDatabase } from '../helpers/services.js';
import { call, cli, cliJson, fleetConfig, pollUntilDenied, startFleet, stopFleet } from './helpers.js';

// `keys revoke` writes the store, then announces the revocation through Redis. When the
// announcement fails (the CLI cannot reach Redis), the command fails after the store
// write, and every gateway keeps the key's cached identity. The retry the error asks for
// finds the key already revoked: it must announce it all the same, so the gateways refuse
// the key within 1 s of it, as after any revocation. Checked from the upstream's side.

const BOUND_MS = 1_000;

async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

const skip = (await serviceSkip('postgres')) || (await serviceSkip('redis'));
if (skip) t.plan(0, `skipping: ${skip}`);
else {
  for (const how of ['by id', 'by name', 'rotate'] as const) t.test(`a revocation (${how}) whose announcement failed is announced by its retry`, async (t) => {
    const db = await tempDatabase();
    t.teardown(() => db.drop());
    const up = await startRawUpstream();
    t.teardown(() => up.close());
    const prefix = redisPrefix();
    t.teardown(() => prefix.clean());
    const dir = await mkdtemp(join(tmpdir(), 'pcl-revoke-retry-'));
    t.teardown(() => rm(dir, { recursive: true, force: true }));

    const yaml = fleetConfig({ store: db.url, upstream: up.url, redis: REDIS_URL, keyPrefix: prefix.prefix });
    const cfg = join(dir, 'gateway.config.yaml');
    await writeFile(cfg, yaml);
    // The same fleet, seen from an operator's machine that cannot reach Redis right now.
    const cut = join(dir, 'cut-off.config.yaml');
    await writeFile(cut, fleetConfig({ store: db.url, upstream: up.url, redis: `redis://127.0.0.1:${await closedPort()}`, keyPrefix: prefix.prefix, revocationTimeout: '300ms' }));

    const fleet = await startFleet(2, yaml);
    t.teardown(() => stopFleet(fleet));
    const key = cliJson<{ id: string; key: string }>(await cli(cfg, 'keys', 'create', '--subject', 'leaver', '--role', 'basic', '--name', 'job-7', '--json'));
    const revoke = how === 'by id' ? ['keys', 'revoke', key.id] : how === 'by name' ? ['keys', 'revoke', '--name', 'job-7'] : ['keys', 'rotate', key.id, '--grace', '0s', '--json'];
    const auth = { 'x-api-key': key.key };
    for (const inst of fleet) t.equal((await call(inst, '/x', auth)).status, 200, `${inst.name}: the key works and is cached`);

    const failed = await cli(cut, ...revoke);
    t.not(failed.code, 0, 'the revocation fails while Redis is unreachable');
    t.match(failed.err, how === 'rotate' ? /not announced.*keys rotate/ : /retry/i, 'and says to retry');
    // A rotation's new key is stored: its secret is printed all the same, or it would be lost.
    const successor = how === 'rotate' ? (JSON.parse(failed.out) as { id: string; key: string }) : undefined;
    const listed = cliJson<{ id: string; status: string }[]>(await cli(cfg, 'keys', 'list', '--json'));
    t.equal(listed.find((k) => k.id === key.id)?.status, how === 'rotate' ? 'rotated' : 'revoked', 'the store has it');

    const retry = await cli(cfg, ...revoke);
    if (how === 'rotate') t.match(retry.err, /rotated \(its rotation was announced again\)/, 'the retry finds the key rotated, and announces it');
    else t.equal(retry.code, 0, `the retry succeeds (${retry.err.trim()})`);
    if (how === 'by id') t.match(retry.out, /already revoked.*announced again/, 'and says what it did');
    const denials = await pollUntilDenied(fleet, '/x', auth, { deadlineMs: 5_000 });
    for (const d of denials) {
      t.equal(d.code, 'key-revoked', `${d.instance}: refused as revoked`);
      const ms = (d.sentAt ?? Infinity) - retry.exitedAt;
      t.ok(ms <= BOUND_MS, `${d.instance}: refused ${ms.toFixed(0)} ms after the retry (bound ${BOUND_MS} ms)`);
    }
    // The upstream saw the key only before the first revocation attempt.
    const upstreamAt = up.requests.filter((r) => r.headerLines.some((l) => l.toLowerCase() === `x-auth-key-id: ${key.id.toLowerCase()}`)).map((r) => r.at);
    t.ok(upstreamAt.length >= 2, `the key reached the upstream before (${upstreamAt.length} requests)`);
    if (successor !== undefined) for (const inst of fleet) t.equal((await call(inst, '/x', { 'x-api-key': successor.key })).status, 200, `${inst.name}: the printed successor works`);
    t.ok(upstreamAt.every((at) => at <= performance.timeOrigin + retry.exitedAt + BOUND_MS), 'nothing for the key reached the upstream more than 1 s after the retry');
  });
}
