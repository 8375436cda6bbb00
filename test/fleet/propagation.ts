import type { Test } from 'tap';
import { call, cli, cliJson, fleetJwt, pollUntilDenied, signedMs, type CliRun, type Denial, type Instance } from './helpers.js';

/** Every instance must refuse a revoked credential within this long after the CLI returns. */
export const PROPAGATION_BOUND_MS = 100;

/** When revocation announcements reached a listener in the test process (performance.now()). */
export interface AnnouncementLog {
  readonly seen: number[];
}

export interface PropagationContext {
  /** Label in the printed figures: `redis`, `LISTEN/NOTIFY`. */
  backend: string;
  fleet: Instance[];
  configFile: string;
  announcements: AnnouncementLog;
  /** The bound this backend promises (default {@link PROPAGATION_BOUND_MS}). */
  boundMs?: number;
}

/** Everything measured for one revocation, for the summary. */
export interface Measurement {
  scenario: string;
  cliMs: number;
  /** Per instance: first 401 relative to the CLI's exit (negative: before it exited). */
  afterExit: number[];
  /** Per instance: first 401 relative to the first announcement seen after the CLI started. */
  afterAnnouncement: number[];
}

const bearer = (v: string) => ({ authorization: `Bearer ${v}` });

async function createKey(configFile: string, subject: string, name: string): Promise<{ id: string; key: string }> {
  const k = cliJson<{ id: string; key: string; subject: string }>(await cli(configFile, 'keys', 'create', '--subject', subject, '--role', 'basic', '--name', name, '--json'));
  return { id: k.id, key: k.key };
}

/** Every instance answers 200 for every credential: verified and cached everywhere. */
async function warm(t: Test, fleet: readonly Instance[], creds: Record<string, string>): Promise<void> {
  for (const inst of fleet) {
    for (const [label, value] of Object.entries(creds)) {
      const a = await call(inst, `/warm/${label}`, bearer(value));
      t.equal(a.status, 200, `${inst.name}: ${label} works before the revocation (${a.code ?? ''})`);
    }
  }
}

/**
 * Starts polling every instance with each credential, runs the CLI, and waits until every
 * instance refuses every credential; checks the code and the bound, and records the times.
 */
async function revokeAndMeasure(
  t: Test,
  ctx: PropagationContext,
  scenario: string,
  creds: Record<string, string>,
  expectCode: 'key-revoked' | 'token-revoked',
  args: string[],
): Promise<Measurement> {
  const polls: Array<Promise<Denial[]>> = [];
  const firstAnnouncement = ctx.announcements.seen.length;
  // Polling starts with the CLI, so an instance that learns before the CLI has exited is seen as such.
  for (const value of Object.values(creds)) polls.push(pollUntilDenied(ctx.fleet, '/poll', bearer(value), { gapMs: 2, deadlineMs: 20_000 }));
  const run: CliRun = await cli(ctx.configFile, ...args);
  t.equal(run.code, 0, `${args.join(' ')} exits 0 ${run.err}`);
  const results = await Promise.all(polls);
  const announcedAt = ctx.announcements.seen[firstAnnouncement];
  t.ok(announcedAt !== undefined, `${scenario}: the revocation was announced`);

  const afterExit: number[] = [];
  const afterAnnouncement: number[] = [];
  const labels = Object.keys(creds);
  results.forEach((denials, ci) => {
    for (const d of denials) {
      t.ok(d.allowed > 0, `${scenario}: ${d.instance} let ${labels[ci]} through until the revocation (${d.allowed} requests)`);
      t.equal(d.status, 401, `${scenario}: ${d.instance} refuses ${labels[ci]}`);
      t.equal(d.code, expectCode, `${scenario}: ${d.instance} says ${expectCode} for ${labels[ci]}`);
      if (d.at === undefined) continue;
      const late = d.at - run.exitedAt;
      afterExit.push(late);
      if (announcedAt !== undefined) afterAnnouncement.push(d.at - announcedAt);
      const bound = ctx.boundMs ?? PROPAGATION_BOUND_MS;
      t.ok(late <= bound, `${scenario}: ${d.instance} refuses ${labels[ci]} within ${bound} ms of the CLI returning (${signedMs(late)})`);
    }
  });
  // Stays refused (not a transient answer).
  for (const inst of ctx.fleet) {
    for (const [label, value] of Object.entries(creds)) {
      const a = await call(inst, '/again', bearer(value));
      t.same([a.status, a.code], [401, expectCode], `${scenario}: ${inst.name} keeps refusing ${label}`);
    }
  }
  const m: Measurement = { scenario, cliMs: run.exitedAt - run.startedAt, afterExit, afterAnnouncement };
  t.comment(
    `${ctx.backend} ${scenario}: CLI ran ${m.cliMs.toFixed(0)} ms; first 401 per instance and credential, after the CLI exited: ` +
      `${afterExit.map(signedMs).join(', ')}; after the announcement reached a listener: ${afterAnnouncement.map(signedMs).join(', ')}`,
  );
  return m;
}

/**
 * The fleet-wide revocation suite: one key, one JWT by jti, every key of a subject and
 * every JWT of a subject, each revoked through the CLI while three instances cache them.
 */
export async function propagationSuite(t: Test, ctx: PropagationContext): Promise<{ figures: Measurement[]; revoked: Revoked[]; working: Record<string, string> }> {
  const cfg = ctx.configFile;
  const [alice, bob1, bob2, dave, erin] = await Promise.all([
    createKey(cfg, 'alice', 'laptop'),
    createKey(cfg, 'bob', 'laptop'),
    createKey(cfg, 'bob', 'ci'),
    createKey(cfg, 'dave', 'laptop'),
    createKey(cfg, 'erin', 'laptop'),
  ]);
  const carolJwt = await fleetJwt('carol');
  const bobJwt = await fleetJwt('bob');
  const dave1 = await fleetJwt('dave');
  const dave2 = await fleetJwt('dave');
  // Minted now, valid from 10 s on, without `iat`: issued before the revocation all the same.
  const dave3 = await fleetJwt('dave', 'basic', { scheduled: 10 });
  const erinJwt = await fleetJwt('erin');
  await warm(t, ctx.fleet, {
    alice: alice.key, bob1: bob1.key, bob2: bob2.key, dave: dave.key, erin: erin.key,
    carolJwt: carolJwt.token, bobJwt: bobJwt.token, dave1: dave1.token, dave2: dave2.token, dave3: dave3.token, erinJwt: erinJwt.token,
  });

  const out: Measurement[] = [];
  out.push(await revokeAndMeasure(t, ctx, 'keys revoke ID', { alice: alice.key }, 'key-revoked', ['keys', 'revoke', alice.id]));
  out.push(await revokeAndMeasure(t, ctx, 'tokens revoke --jti', { carol: carolJwt.token }, 'token-revoked', ['tokens', 'revoke', '--jti', carolJwt.jti]));
  out.push(await revokeAndMeasure(t, ctx, 'keys revoke --subject', { bob1: bob1.key, bob2: bob2.key }, 'key-revoked', ['keys', 'revoke', '--subject', 'bob']));
  out.push(await revokeAndMeasure(t, ctx, 'tokens revoke --subject', { dave1: dave1.token, dave2: dave2.token, dave3: dave3.token }, 'token-revoked', ['tokens', 'revoke', '--subject', 'dave']));

  // Revocations are scoped: a subject's keys and JWTs are revoked apart, other subjects untouched.
  const working = { bobJwt: bobJwt.token, daveKey: dave.key, erinKey: erin.key, erinJwt: erinJwt.token };
  for (const inst of ctx.fleet) {
    for (const [label, value] of Object.entries(working)) {
      const a = await call(inst, '/after', bearer(value));
      t.equal(a.status, 200, `${inst.name}: ${label} still works (${a.code ?? ''})`);
    }
  }
  const revoked: Revoked[] = [
    { label: 'alice key', value: alice.key, code: 'key-revoked' },
    { label: 'bob key', value: bob2.key, code: 'key-revoked' },
    { label: 'carol JWT (jti)', value: carolJwt.token, code: 'token-revoked' },
    { label: 'dave JWT (subject)', value: dave1.token, code: 'token-revoked' },
  ];
  return { figures: out, revoked, working };
}

/** A credential the suite revoked, and the code it must be refused with. */
export interface Revoked {
  label: string;
  value: string;
  code: 'key-revoked' | 'token-revoked';
}

/** An instance started after the revocations learns them from the durable record. */
export async function checkLateInstance(t: Test, inst: Instance, revoked: readonly Revoked[], working: Record<string, string>): Promise<void> {
  // Until its revocation set is loaded a gateway refuses 503 (fail closed); wait for /readyz.
  let ready = false;
  for (let i = 0; i < 300 && !ready && inst.gw.adminUrl !== undefined; i++) {
    ready = await fetch(`${inst.gw.adminUrl}/readyz`).then((r) => r.ok, () => false);
    if (!ready) await new Promise((r) => setTimeout(r, 50));
  }
  t.ok(ready, 'the newly started instance reports ready');
  for (const r of revoked) {
    const a = await call(inst, '/late', bearer(r.value));
    t.same([a.status, a.code], [401, r.code], `a newly started instance refuses the ${r.label}`);
  }
  for (const [label, value] of Object.entries(working)) {
    const a = await call(inst, '/late', bearer(value));
    t.equal(a.status, 200, `a newly started instance admits ${label}`);
  }
}

/** One line with the spread of a list of figures. */
export function summary(label: string, values: readonly number[]): string {
  if (values.length === 0) return `${label}: no figures`;
  const s = [...values].sort((a, b) => a - b);
  const pick = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
  return `${label}: n=${s.length} min ${signedMs(s[0]!)}, median ${signedMs(pick(0.5))}, max ${signedMs(s.at(-1)!)}`;
}
