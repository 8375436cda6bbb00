import t from 'tap';
import { JwtAuthenticator } from '../../src/authn/jwt/authenticator.js';
import { explainJwt } from '../../src/authn/jwt/explain.js';
import type { JwtRejection } from '../../src/authn/jwt/jose-errors.js';
import { GatewayError } from '../../src/http/problem.js';
import { buildJwtAttacks } from '../fixtures/jwt-attacks.js';

const fx = await buildJwtAttacks();
t.teardown(() => fx.close());
const rankOf = (role: string): number => fx.roles.indexOf(role);
const credential = (value: string) => ({ kind: 'jwt' as const, value, source: 'authorization' });

t.test('every case gets its expected outcome (fresh authenticator, no cache)', async (t) => {
  const auth = new JwtAuthenticator(fx.jwt, rankOf, fx.clock);
  t.teardown(() => auth.close());
  await auth.start();
  t.ok(auth.ready(), 'JWKS loaded');
  for (const c of fx.cases) {
    if (c.expect === 'ok') {
      const identity = await auth.authenticate(credential(c.token), { clientIp: '127.0.0.1' });
      t.match(identity, { method: 'jwt', ...c.identity }, c.name);
      t.same(identity.scopes, c.identity!.scopes, `${c.name}: scopes`);
      t.equal(identity.scopesHeader, c.identity!.scopes.join(' '), `${c.name}: scopes header`);
      t.equal(identity.roleRank, rankOf(c.identity!.role), `${c.name}: role rank`);
      continue;
    }
    try {
      await auth.authenticate(credential(c.token), { clientIp: '127.0.0.1' });
      t.fail(`${c.name}: accepted`);
    } catch (err) {
      t.ok(err instanceof GatewayError, `${c.name}: a GatewayError`);
      t.equal((err as GatewayError).code, c.expect, `${c.name}: code`);
      t.equal((err as GatewayError).status, 401, `${c.name}: 401`);
      t.equal((err as JwtRejection).check, c.check, `${c.name}: failing check`);
    }
  }
  t.equal(fx.lure.fetches, 0, 'no request ever reached the server named in jku/x5u');
  // Unknown kids refetch at most once per cooldown; the clock does not move here.
  t.equal(fx.jwks.fetches, 1, 'the JWKS was fetched once at start and never again within the cooldown');
});

t.test('the same table through the cache: repeats give the same answer, synchronously when remembered', async (t) => {
  const auth = new JwtAuthenticator(fx.jwt, rankOf, fx.clock);
  t.teardown(() => auth.close());
  await auth.start();
  for (const c of fx.cases) {
    const first = await Promise.resolve()
      .then(() => auth.verify(c.token))
      .then(
        (i) => ({ ok: true as const, subject: i.subject }),
        (e: JwtRejection) => ({ ok: false as const, code: e.code }),
      );
    let second: { ok: true; sync: boolean } | { ok: false; code: string; sync: boolean };
    try {
      const r = auth.verify(c.token);
      const sync = !(r instanceof Promise);
      const identity = await r;
      second = { ok: true, sync };
      t.equal(identity.subject, first.ok ? first.subject : undefined, `${c.name}: same subject`);
    } catch (err) {
      second = { ok: false, code: (err as JwtRejection).code, sync: true };
    }
    t.equal(second.ok, first.ok, `${c.name}: same decision twice`);
    if (c.expect === 'ok') t.ok(second.sync, `${c.name}: second answer synchronous`);
    else t.equal((second as { code: string }).code, c.expect, `${c.name}: same code twice`);
  }
  t.ok(auth.stats.hits >= fx.cases.filter((c) => c.expect === 'ok').length, 'accepted tokens were cache hits the second time');
  t.ok(auth.stats.negativeHits > 0, 'some rejections were answered from the negative cache');
  t.equal(fx.lure.fetches, 0);
});

t.test('explain lists the checks and agrees with verification', async (t) => {
  for (const c of fx.cases) {
    const report = await explainJwt(c.token, fx.jwt, fx.clock, { rankOf });
    t.equal(report.decision, c.expect === 'ok' ? 'accept' : 'reject', `${c.name}: decision`);
    if (c.expect === 'ok') {
      t.equal(report.identity?.subject, c.identity!.subject, `${c.name}: identity`);
      t.ok(report.checks.every((r) => r.ok), `${c.name}: every check passed`);
      t.same(
        report.checks.map((r) => r.check).slice(0, 6),
        ['size', 'format', 'header', 'issuer', 'algorithm', 'key'],
        `${c.name}: checks in evaluation order`,
      );
      t.ok(report.checks.some((r) => r.check === 'signature'), `${c.name}: signature listed`);
    } else {
      t.equal(report.code, c.expect, `${c.name}: code`);
      const last = report.checks.at(-1)!;
      t.same({ check: last.check, ok: last.ok }, { check: c.check, ok: false }, `${c.name}: last check is the failure`);
      t.ok(report.checks.slice(0, -1).every((r) => r.ok), `${c.name}: earlier checks passed`);
    }
  }
  t.equal(fx.lure.fetches, 0);
});
