import t, { type Test } from 'tap';
import { Agent, type Dispatcher } from 'undici';
import { SignJWT, exportJWK, generateKeyPair, type JWK } from 'jose';
import { JwksCache } from '../../src/authn/jwt/jwks.js';
import { JwtAuthenticator } from '../../src/authn/jwt/authenticator.js';
import type { JwtRejection } from '../../src/authn/jwt/jose-errors.js';
import { configSchema, type JwtConfig } from '../../src/config/schema.js';
import { startJwksServer, type JwksServer } from '../fixtures/jwt-attacks.js';

const ISS = 'https://idp.portcullis.test';
const COOLDOWN = 30_000;
const MAX_AGE = 600_000;

async function esKey(kid: string) {
  const pair = await generateKeyPair('ES256', { extractable: true });
  const jwk: JWK = { ...(await exportJWK(pair.publicKey)), kid, alg: 'ES256', use: 'sig' };
  return { ...pair, jwk, kid };
}
type EsKey = Awaited<ReturnType<typeof esKey>>;

const k1 = await esKey('k1');
const k2 = await esKey('k2');

function movableClock(start = Date.UTC(2030, 0, 1)) {
  let now = start;
  return { now: () => now, advance: (ms: number) => void (now += ms) };
}

function jwtConfig(jwksUri: string, extra: Record<string, unknown> = {}, issuers?: unknown[]): JwtConfig {
  return configSchema.parse({
    upstreams: { api: { url: 'http://127.0.0.1:9' } },
    routes: [{ match: { path: '/**' }, upstream: 'api' }],
    jwt: {
      jwksCooldown: '30s',
      jwksCacheMaxAge: '10m',
      jwksTimeout: '500ms',
      ...extra,
      issuers: issuers ?? [{ name: 'idp', issuer: ISS, algorithms: ['ES256'], jwksUri }],
    },
  }).jwt;
}

function token(key: EsKey, clock: { now(): number }, kid: string = key.kid, sub = 'alice'): Promise<string> {
  const s = Math.floor(clock.now() / 1000);
  return new SignJWT({ sub }).setProtectedHeader({ alg: 'ES256', kid }).setIssuer(ISS).setIssuedAt(s).setExpirationTime(s + 3600).sign(key.privateKey);
}

async function code(p: unknown): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    return `${(err as JwtRejection).code}/${(err as JwtRejection).check}`;
  }
}

async function setup(t: Test, keys: JWK[], extra: Record<string, unknown> = {}, dispatcher?: Dispatcher) {
  const server: JwksServer = await startJwksServer({ keys });
  const clock = movableClock();
  const auth = new JwtAuthenticator(jwtConfig(server.url, extra), () => 0, clock, { dispatcher, negativeTtl: 0 });
  t.teardown(async () => {
    auth.close();
    await server.close();
  });
  return { server, clock, auth };
}

t.test('ready() is false until the first successful fetch, and recovers without traffic', async (t) => {
  const { server, auth } = await setup(t, [k1.jwk]);
  server.setStatus(500);
  t.equal(auth.ready(), false, 'not ready before start');
  await auth.start();
  t.equal(auth.ready(), false, 'not ready after a failed first fetch');
  const cache = auth.jwks.get('idp')!;
  t.equal(cache.stats.failures, 1);
  t.match(cache.stats.lastError, /500/);
  server.setStatus(200);
  // The retry after a failed first load runs on a short real-time backoff.
  const deadline = Date.now() + 5_000;
  while (!auth.ready() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  t.equal(auth.ready(), true, 'ready after the background retry succeeded');
  t.equal(server.fetches, 2);
});

t.test('a token arriving before any key set loaded waits for it or fails as token-invalid', async (t) => {
  const { server, clock, auth } = await setup(t, [k1.jwk]);
  server.setDelay(100);
  const startP = auth.start();
  const id = await auth.verify(await token(k1, clock));
  t.equal(id.subject, 'alice', 'the request joined the start-up fetch');
  await startP;
  t.equal(server.fetches, 1, 'one fetch for both');

  const down = await setup(t, [k1.jwk]);
  down.server.setStatus(503);
  await down.auth.start();
  t.equal(await code(down.auth.verify(await token(k1, down.clock))), 'token-invalid/key', 'no keys: token-invalid');
  t.equal(down.server.fetches, 1, 'within the cooldown no new fetch for it');
});

t.test('rotation: a new kid is picked up by a refetch once the cooldown allows', async (t) => {
  const { server, clock, auth } = await setup(t, [k1.jwk]);
  await auth.start();
  t.equal((await auth.verify(await token(k1, clock))).subject, 'alice');
  server.setKeys({ keys: [k1.jwk, k2.jwk] });
  t.equal(await code(auth.verify(await token(k2, clock))), 'token-invalid/key', 'new kid within the cooldown of the start-up fetch: refused');
  t.equal(server.fetches, 1, 'and not fetched');
  clock.advance(COOLDOWN);
  t.equal((await auth.verify(await token(k2, clock, 'k2', 'bob'))).subject, 'bob', 'after the cooldown the unknown kid triggers a refetch');
  t.equal(server.fetches, 2);
  server.setKeys({ keys: [k2.jwk] });
  clock.advance(COOLDOWN);
  t.equal((await auth.verify(await token(k2, clock, 'k2', 'carol'))).subject, 'carol', 'known kid: no fetch needed');
  t.equal(server.fetches, 2);
});

t.test('a burst of 50 unknown kids causes at most one refetch per cooldown', async (t) => {
  const { server, clock, auth } = await setup(t, [k1.jwk]);
  await auth.start();
  clock.advance(COOLDOWN);
  server.setDelay(50);
  const burst = async () => Promise.all(Array.from({ length: 50 }, async (_, i) => code(auth.verify(await token(k1, clock, `unknown-${i}`, `u${i}`)))));
  const first = await burst();
  t.ok(first.every((c) => c === 'token-invalid/key'), 'all refused');
  t.equal(server.fetches, 2, 'one coalesced refetch for the whole burst');
  clock.advance(COOLDOWN - 1);
  await burst();
  t.equal(server.fetches, 2, 'none within the cooldown');
  clock.advance(1);
  await burst();
  t.equal(server.fetches, 3, 'one more once the cooldown passed');
});

t.test('stale keys are served while refreshes fail; refreshes are background and rate-limited', async (t) => {
  const { server, clock, auth } = await setup(t, [k1.jwk]);
  await auth.start();
  const cache = auth.jwks.get('idp')!;
  server.setStatus(500);
  clock.advance(MAX_AGE);
  t.equal((await auth.verify(await token(k1, clock, 'k1', 'a'))).subject, 'a', 'stale set served');
  await new Promise((r) => setTimeout(r, 50));
  t.equal(server.fetches, 2, 'a background refresh was attempted');
  t.equal(cache.stats.failures, 1);
  for (const sub of ['b', 'c', 'd']) t.equal((await auth.verify(await token(k1, clock, 'k1', sub))).subject, sub, 'still served');
  t.equal(server.fetches, 2, 'failed refresh not retried on every request');
  t.equal(auth.ready(), true, 'still ready: a set is loaded');
  clock.advance(COOLDOWN);
  server.setStatus(200);
  server.setKeys({ keys: [k2.jwk] });
  await auth.verify(await token(k1, clock, 'k1', 'e'));
  await new Promise((r) => setTimeout(r, 50));
  t.equal(server.fetches, 3, 'retried once the cooldown passed');
  t.equal((await auth.verify(await token(k2, clock, 'k2', 'f'))).subject, 'f', 'the refreshed set is in use');
  t.equal(await code(auth.verify(await token(k1, clock, 'k1', 'g'))), 'token-invalid/key', 'the withdrawn key no longer verifies new tokens');
});

t.test('JwksCache: concurrent refreshes coalesce; bad documents never replace a good set', async (t) => {
  const server = await startJwksServer({ keys: [k1.jwk] });
  t.teardown(() => server.close());
  const clock = movableClock();
  const cache = new JwksCache({ uri: server.url, timeout: 500, cacheMaxAge: MAX_AGE, cooldown: COOLDOWN, clock, maxBytes: 4096 });
  t.teardown(() => cache.close());
  server.setDelay(30);
  const results = await Promise.all(Array.from({ length: 10 }, () => cache.refresh()));
  t.same(new Set(results), new Set([true]));
  t.equal(server.fetches, 1, 'ten concurrent refreshes, one fetch');
  server.setDelay(0);
  for (const [label, keys] of [
    ['not a key set', { nope: true }],
    ['keys not objects', { keys: ['x'] }],
    ['oversized', { keys: [k1.jwk], pad: 'x'.repeat(5000) }],
  ] as const) {
    server.setKeys(keys as never);
    t.equal(await cache.refresh(), false, `${label}: refresh fails`);
    t.equal(cache.ready(), true, `${label}: still ready`);
  }
  t.equal(cache.stats.failures, 3);
  t.throws(() => new JwksCache({ uri: 'file:///etc/passwd', timeout: 1, cacheMaxAge: 1, cooldown: 1, clock }), { name: 'TypeError' });
});

t.test('JwksCache: a slow endpoint times out at jwksTimeout', async (t) => {
  const server = await startJwksServer({ keys: [k1.jwk] });
  t.teardown(() => server.close());
  server.setDelay(2_000);
  const cache = new JwksCache({ uri: server.url, timeout: 200, cacheMaxAge: MAX_AGE, cooldown: COOLDOWN, clock: movableClock() });
  t.teardown(() => cache.close());
  const started = Date.now();
  await cache.start();
  t.ok(Date.now() - started < 1_500, 'gave up well before the server answered');
  t.equal(cache.ready(), false);
  t.equal(cache.stats.failures, 1);
});

t.test('issuers naming the same JWKS share one cache; the dispatcher option carries the fetches', async (t) => {
  let dispatched = 0;
  const agent = new Agent();
  const counting = agent.compose((dispatch) => (opts, handler) => {
    dispatched++;
    return dispatch(opts, handler);
  });
  t.teardown(() => agent.close());
  const server = await startJwksServer({ keys: [k1.jwk] });
  t.teardown(() => server.close());
  const clock = movableClock();
  const config = jwtConfig(server.url, {}, [
    { name: 'one', issuer: ISS, algorithms: ['ES256'], jwksUri: server.url },
    { name: 'two', issuer: 'https://other.portcullis.test', algorithms: ['ES256'], jwksUri: server.url },
  ]);
  const auth = new JwtAuthenticator(config, () => 0, clock, { dispatcher: counting });
  t.teardown(() => auth.close());
  await auth.start();
  t.equal(auth.jwks.get('one'), auth.jwks.get('two'), 'one cache object');
  t.equal(server.fetches, 1);
  t.equal(dispatched, 1, 'fetched through the given dispatcher');
  const s = Math.floor(clock.now() / 1000);
  const other = await new SignJWT({ sub: 'x' }).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setIssuer('https://other.portcullis.test').setIssuedAt(s).setExpirationTime(s + 60).sign(k1.privateKey);
  t.equal((await auth.verify(other)).issuer, 'two');
});

t.test('several keys fit a token without kid: each is tried', async (t) => {
  const noKid = (k: EsKey): JWK => ({ ...k.jwk, kid: undefined });
  const { clock, auth } = await setup(t, [noKid(k1), noKid(k2)]);
  await auth.start();
  const s = Math.floor(clock.now() / 1000);
  const tok = await new SignJWT({ sub: 'z' }).setProtectedHeader({ alg: 'ES256' }).setIssuer(ISS).setIssuedAt(s).setExpirationTime(s + 60).sign(k2.privateKey);
  t.equal((await auth.verify(tok)).subject, 'z', 'verified by the second candidate');
  const attacker = await esKey('k1');
  const forged = await new SignJWT({ sub: 'z' }).setProtectedHeader({ alg: 'ES256' }).setIssuer(ISS).setIssuedAt(s).setExpirationTime(s + 60).sign(attacker.privateKey);
  t.equal(await code(auth.verify(forged)), 'token-invalid/key', 'none verifies: refused');
});

t.test('failed fetches are reported to onJwksError with the issuer name; a throwing reporter is contained', async (t) => {
  const server = await startJwksServer({ keys: [k1.jwk] });
  t.teardown(() => server.close());
  server.setStatus(502);
  const seen: string[] = [];
  const auth = new JwtAuthenticator(jwtConfig(server.url), () => 0, movableClock(), {
    onJwksError: (issuer, err) => {
      seen.push(`${issuer}: ${(err as Error).message}`);
      throw new Error('reporter broke');
    },
  });
  t.teardown(() => auth.close());
  await auth.start();
  t.equal(seen.length, 1);
  t.match(seen[0], /^idp: .*502/);
  t.equal(auth.ready(), false);
});
