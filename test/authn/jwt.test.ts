import t from 'tap';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { SignJWT, exportJWK, exportSPKI, generateKeyPair, type JWTPayload } from 'jose';
import { JwtAuthenticator, type JwtAuthenticatorOptions } from '../../src/authn/jwt/authenticator.js';
import { JwtRejection } from '../../src/authn/jwt/jose-errors.js';
import { configSchema, type JwtConfig } from '../../src/config/schema.js';
import type { Identity } from '../../src/authn/types.js';
import { startJwksServer } from '../fixtures/jwt-attacks.js';

const ISS = 'https://auth.portcullis.test';
const SECRET = 'a-test-secret-that-is-at-least-32-bytes-long!';
const ROLES = ['basic', 'premium', 'admin'];
const rankOf = (role: string): number => ROLES.indexOf(role);

function jwtConfig(issuer: Record<string, unknown> = {}, extra: Record<string, unknown> = {}, more: unknown[] = []): JwtConfig {
  return configSchema.parse({
    upstreams: { api: { url: 'http://127.0.0.1:9' } },
    routes: [{ match: { path: '/**' }, upstream: 'api' }],
    jwt: { clockTolerance: '30s', ...extra, issuers: [{ name: 'local', issuer: ISS, algorithms: ['HS256'], secret: SECRET, ...issuer }, ...more] },
  }).jwt;
}

function movableClock(start = Date.UTC(2030, 0, 1)) {
  let now = start;
  return { now: () => now, advance: (ms: number) => void (now += ms), set: (ms: number) => void (now = ms) };
}

const secretKey = new TextEncoder().encode(SECRET);
function hs(claims: Record<string, unknown>, at: number, header: Record<string, unknown> = {}): Promise<string> {
  const s = Math.floor(at / 1000);
  return new SignJWT({ iss: ISS, sub: 'alice', iat: s, exp: s + 3600, ...claims } as JWTPayload).setProtectedHeader({ alg: 'HS256', ...header }).sign(secretKey);
}

function setup(issuer: Record<string, unknown> = {}, options: JwtAuthenticatorOptions = {}, extra: Record<string, unknown> = {}) {
  const clock = movableClock();
  const auth = new JwtAuthenticator(jwtConfig(issuer, extra), rankOf, clock, options);
  return { clock, auth };
}

async function outcome(run: () => unknown): Promise<string> {
  try {
    const identity = (await run()) as Identity;
    return `ok:${identity.subject}`;
  } catch (err) {
    if (!(err instanceof JwtRejection)) throw err;
    return `${err.code}/${err.check}`;
  }
}

t.test('claim mapping', async (t) => {
  type Case = [name: string, claims: Record<string, string> | undefined, payload: Record<string, unknown>, want: Partial<Identity> | string, issuerExtra?: Record<string, unknown>];
  const cases: Case[] = [
    ['defaults: sub, role, scope string', undefined, { sub: 'alice', role: 'premium', scope: 'a b  c' }, { subject: 'alice', role: 'premium', roleRank: 1, scopes: ['a', 'b', 'c'], scopesHeader: 'a b c' }],
    ['renamed claims', { subject: 'user_id', role: 'access_role', scopes: 'perms' }, { user_id: 'u1', access_role: 'admin', perms: ['x', 'y'] }, { subject: 'u1', role: 'admin', roleRank: 2, scopes: ['x', 'y'], scopesHeader: 'x y' }],
    ['nested role path', { subject: 'sub', role: 'realm_access.role', scopes: 'scope' }, { sub: 's', realm_access: { role: 'basic' } }, { role: 'basic', roleRank: 0 }],
    ['deep nested paths', { subject: 'user.id', role: 'a.b.c', scopes: 'x.y' }, { user: { id: 7 }, a: { b: { c: 'premium' } }, x: { y: 's1 s2' } }, { subject: '7', role: 'premium', scopes: ['s1', 's2'] }],
    ['a claim whose name has dots is read whole first', { subject: 'sub', role: 'https://example.com/role', scopes: 'scope' }, { sub: 's', 'https://example.com/role': 'admin' }, { role: 'admin' }],
    ['path through a non-object stops: role absent', { subject: 'sub', role: 'a.b', scopes: 'scope' }, { sub: 's', a: 'str' }, { role: '', roleRank: -1 }],
    ['inherited properties are not claims', { subject: 'sub', role: 'a.constructor', scopes: 'scope' }, { sub: 's', a: {} }, { role: '' }],
    ['numeric subject and role in decimal', undefined, { sub: 12345678901234, role: 2 }, { subject: '12345678901234', role: '2', roleRank: -1 }],
    ['large integer subject stays decimal', undefined, { sub: 1e21 }, { subject: '1000000000000000000000' }],
    ['role list picks the highest-ranked role', undefined, { sub: 's', role: ['basic', 'admin', 'premium'] }, { role: 'admin', roleRank: 2 }],
    ['role list of unknown roles picks the first', undefined, { sub: 's', role: ['x', 'y'] }, { role: 'x', roleRank: -1 }],
    ['no role: defaultRole', undefined, { sub: 's' }, { role: 'basic', roleRank: 0 }, { defaultRole: 'basic' }],
    ['null role: defaultRole', undefined, { sub: 's', role: null }, { role: 'premium' }, { defaultRole: 'premium' }],
    ['no role, no default: empty, ranks below all', undefined, { sub: 's' }, { role: '', roleRank: -1 }],
    ['role that is not listed ranks -1', undefined, { sub: 's', role: 'superuser' }, { role: 'superuser', roleRank: -1 }],
    ['scope list with numbers', undefined, { sub: 's', scope: ['a', 3] }, { scopes: ['a', '3'], scopesHeader: 'a 3' }],
    ['no scopes', undefined, { sub: 's' }, { scopes: [], scopesHeader: '' }],
    ['scope string with tabs and line breaks between tokens', undefined, { sub: 's', scope: 'a\tb\r\nc  d' }, { scopes: ['a', 'b', 'c', 'd'], scopesHeader: 'a b c d' }],
    ['missing subject', undefined, { role: 'basic' }, 'token-invalid/claims'],
    ['empty subject', undefined, { sub: '' }, 'token-invalid/claims'],
    ['boolean subject', undefined, { sub: true }, 'token-invalid/claims'],
    ['object role', undefined, { sub: 's', role: { r: 1 } }, 'token-invalid/claims'],
    ['role with a newline', undefined, { sub: 's', role: 'basic\nx' }, 'token-invalid/claims'],
    ['scope object', undefined, { sub: 's', scope: { a: 1 } }, 'token-invalid/claims'],
    ['scope list with an object', undefined, { sub: 's', scope: ['a', {}] }, 'token-invalid/claims'],
    ['scope list with an empty entry', undefined, { sub: 's', scope: ['a', ''] }, 'token-invalid/claims'],
    ['scope string with a control character', undefined, { sub: 's', scope: 'a\u0000b' }, 'token-invalid/claims'],
    // One scope token to its issuer must not read as two here: only ASCII spaces separate.
    ['scope string with a no-break space', undefined, { sub: 's', scope: 'read\u00a0admin' }, 'token-invalid/claims'],
    ['scope string with a line separator', undefined, { sub: 's', scope: 'read\u2028admin' }, 'token-invalid/claims'],
    ['scope string with a zero-width no-break space', undefined, { sub: 's', scope: 'read\ufeffadmin' }, 'token-invalid/claims'],
    ['scope string with a non-ASCII letter', undefined, { sub: 's', scope: 'r\u00e9ad' }, 'token-invalid/claims'],
    ['scope list with a non-ASCII entry', undefined, { sub: 's', scope: ['read', 'adm\u00efn'] }, 'token-invalid/claims'],
    ['scope list entry with a no-break space', undefined, { sub: 's', scope: ['read\u00a0admin'] }, 'token-invalid/claims'],
    ['aud that is a number', undefined, { sub: 's', aud: 5 }, 'token-invalid/claims'],
    ['jti that is an object', undefined, { sub: 's', jti: {} }, 'token-invalid/claims'],
  ];
  for (const [name, claims, payload, want, issuerExtra] of cases) {
    const { clock, auth } = setup({ ...(claims ? { claims } : {}), ...issuerExtra });
    const { sub: _sub, ...rest } = payload;
    const token = await hs(Object.hasOwn(payload, 'sub') ? payload : { ...rest, sub: undefined }, clock.now());
    if (typeof want === 'string') {
      t.equal(await outcome(() => auth.verify(token)), want, name);
    } else {
      const identity = await auth.verify(token);
      t.match(identity, want, name);
      if (want.scopes) t.same(identity.scopes, want.scopes, `${name}: scopes exactly`);
    }
  }
});

t.test('identity fields', async (t) => {
  const { clock, auth } = setup({ audience: ['api', 'admin-api'] });
  const s = Math.floor(clock.now() / 1000);
  const withJti = await hs({ jti: 'abc-123', aud: ['api', 'x'], iat: s - 10, exp: s + 100 }, clock.now());
  const id = await auth.verify(withJti);
  t.same(
    { ...id },
    {
      method: 'jwt',
      subject: 'alice',
      role: '',
      roleRank: -1,
      scopes: [],
      scopesHeader: '',
      keyId: undefined,
      audiences: ['api', 'x'],
      allowIp: undefined,
      issuedAt: (s - 10) * 1000,
      expiresAt: (s + 100) * 1000,
      revocationId: 'jti:abc-123',
      issuer: 'local',
    },
  );
  t.ok(Object.isFrozen(id) && Object.isFrozen(id.scopes) && Object.isFrozen(id.audiences), 'shared identities are frozen');

  const noJti = await hs({ aud: 'api', iat: undefined, nbf: s - 5 }, clock.now());
  const id2 = await auth.verify(noJti);
  t.equal(id2.revocationId, `tok:${createHash('sha256').update(noJti).digest('hex')}`, 'no jti: tok:<sha256 hex of the token>');
  t.equal(id2.issuedAt, 0, 'no iat: 0, whatever nbf says (a subject-wide revocation covers it)');
  t.same(id2.audiences, ['api']);
  const numericJti = await hs({ aud: 'api', jti: 42, iat: undefined }, clock.now());
  const id3 = await auth.verify(numericJti);
  t.equal(id3.revocationId, 'jti:42');
  t.equal(id3.issuedAt, 0, 'neither iat nor nbf: 0');
  t.equal(auth.kind, 'jwt');
  t.equal((await auth.authenticate({ kind: 'jwt', value: withJti, source: 'authorization' }, { clientIp: '::1' })).subject, 'alice');
});

t.test('cache: hits are synchronous, shared, and never outlive the token', async (t) => {
  const { clock, auth } = setup({ maxTokenAge: '2h' });
  const s = Math.floor(clock.now() / 1000);
  const token = await hs({ exp: s + 100 }, clock.now());
  const first = auth.verify(token);
  t.ok(first instanceof Promise, 'first sight: verification');
  const identity = await first;
  const second = auth.verify(token);
  t.notOk(second instanceof Promise, 'second sight: synchronous');
  t.equal(second, identity, 'the same frozen identity');
  t.same({ ...auth.stats }, { hits: 1, misses: 1, coalesced: 0, negativeHits: 0, verified: 1, rejected: 0 });

  clock.advance((100 + 29) * 1000);
  t.equal(auth.verify(token), identity, 'still cached inside the clock tolerance');
  clock.advance(1000);
  t.equal(await outcome(() => auth.verify(token)), 'token-expired/exp', 'at exp + tolerance the entry is gone and the token expired');

  // maxTokenAge ends the cached life even when exp is far away.
  const c2 = setup({ maxTokenAge: '1h' }, { cacheMaxTtl: 86_400_000 });
  const s2 = Math.floor(c2.clock.now() / 1000);
  const old = await hs({ iat: s2 - 3000, exp: s2 + 86_400 }, c2.clock.now());
  await c2.auth.verify(old);
  c2.clock.advance((600 + 30) * 1000);
  t.notOk(c2.auth.verify(old) instanceof Promise, 'cached until maxTokenAge + tolerance');
  c2.clock.advance(1000);
  t.equal(await outcome(() => c2.auth.verify(old)), 'token-expired/max-age');
});

t.test('cache: cacheMaxTtl bounds tokens without exp and long-lived ones', async (t) => {
  const { clock, auth } = setup({ requireExp: false }, { cacheMaxTtl: 60_000 });
  const token = await hs({ exp: undefined }, clock.now());
  t.equal((await auth.verify(token)).expiresAt, undefined, 'accepted without exp when the issuer allows it');
  clock.advance(59_999);
  t.notOk(auth.verify(token) instanceof Promise, 'hit before the cap');
  clock.advance(1);
  const again = auth.verify(token);
  t.ok(again instanceof Promise, 're-verified at the cap');
  await again;
  t.equal(auth.stats.verified, 2);
});

t.test('concurrent first requests share one verification', async (t) => {
  const { clock, auth } = setup();
  const token = await hs({}, clock.now());
  const all = Array.from({ length: 20 }, () => auth.verify(token));
  t.ok(all.every((p) => p === all[0]), 'the same promise for all');
  const ids = await Promise.all(all);
  t.ok(ids.every((i) => i === ids[0]));
  t.equal(auth.stats.verified, 1);
  t.equal(auth.stats.coalesced, 19);
  const bad = `${token.slice(0, -4)}AAAA`;
  const failures = await Promise.all(Array.from({ length: 5 }, () => outcome(() => auth.verify(bad))));
  t.same(new Set(failures), new Set(['token-invalid/signature']));
  t.equal(auth.stats.rejected, 1, 'one failed verification for five requests');
});

t.test('negative cache: definitive failures are refused from memory for a while; curable ones are not', async (t) => {
  const { clock, auth } = setup({}, { negativeTtl: 5_000 });
  const token = await hs({}, clock.now());
  const bad = `${token.slice(0, -4)}AAAA`;
  t.equal(await outcome(() => auth.verify(bad)), 'token-invalid/signature');
  t.throws(() => auth.verify(bad), { code: 'token-invalid', check: 'signature' }, 'second refusal is synchronous');
  t.equal(auth.stats.negativeHits, 1);
  clock.advance(5_000);
  const later = (() => {
    try {
      return auth.verify(bad);
    } catch (err) {
      return err;
    }
  })();
  t.ok(later instanceof Promise, 'verified again after negativeTtl');
  await t.rejects(later as Promise<unknown>, { code: 'token-invalid' });
  t.equal(auth.stats.rejected, 2);

  const s = Math.floor(clock.now() / 1000);
  const early = await hs({ nbf: s + 60 }, clock.now());
  t.equal(await outcome(() => auth.verify(early)), 'token-invalid/nbf');
  clock.advance(31_000);
  t.equal(await outcome(() => auth.verify(early)), 'ok:alice', 'an nbf failure is not remembered: valid once the time comes');
});

t.test('evict and evictSubject drop cached identities', async (t) => {
  const { clock, auth } = setup();
  const a1 = await hs({ jti: 'j1' }, clock.now());
  const a2 = await hs({ jti: 'j2' }, clock.now());
  const b = await hs({ sub: 'bob' }, clock.now());
  const [ia1, , ib] = [await auth.verify(a1), await auth.verify(a2), await auth.verify(b)];
  t.equal(auth.evict(ia1.revocationId), 1);
  t.ok(auth.verify(a1) instanceof Promise, 'evicted token is verified again');
  t.notOk(auth.verify(a2) instanceof Promise, 'the other token of the subject stays');
  await auth.verify(a1);
  t.equal(auth.evictSubject('alice'), 2);
  t.ok(auth.verify(a2) instanceof Promise);
  t.notOk(auth.verify(b) instanceof Promise, 'other subjects stay');
  t.equal(auth.evict(ib.revocationId), 1, 'tok: ids evict too');
  t.equal(auth.evict('jti:nope'), 0);
});

t.test('oversized tokens are refused synchronously before hashing or parsing', async (t) => {
  const { auth } = setup({}, {}, { maxTokenBytes: 512 });
  t.throws(() => auth.verify('a'.repeat(513)), { code: 'token-invalid', check: 'size' });
  t.equal(auth.stats.misses, 0);
  t.equal(await outcome(() => auth.verify('a'.repeat(512))), 'token-invalid/format', 'at the limit it is parsed');
});

t.test('issuers sharing an iss are told apart by algorithm', async (t) => {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const clock = movableClock();
  const config = jwtConfig({}, {}, [{ name: 'rsa', issuer: ISS, algorithms: ['RS256'], publicKey: rsa.publicKey.export({ type: 'spki', format: 'pem' }) }]);
  const auth = new JwtAuthenticator(config, rankOf, clock);
  const s = Math.floor(clock.now() / 1000);
  const rs = await new SignJWT({ sub: 'r' }).setProtectedHeader({ alg: 'RS256' }).setIssuer(ISS).setIssuedAt(s).setExpirationTime(s + 60).sign(rsa.privateKey);
  t.equal((await auth.verify(rs)).issuer, 'rsa');
  t.equal((await auth.verify(await hs({}, clock.now()))).issuer, 'local');
});

t.test('configuration mistakes fail at construction', async (t) => {
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-384' });
  const ecPem = ec.publicKey.export({ type: 'spki', format: 'pem' }) as string;
  const clock = movableClock();
  const make = (issuer: Record<string, unknown>) => () => new JwtAuthenticator(jwtConfig({ secret: undefined, ...issuer }), rankOf, clock);
  t.throws(make({ algorithms: ['RS256'], publicKey: ecPem }), { name: 'TypeError' }, 'EC key for RS256');
  t.throws(make({ algorithms: ['ES256'], publicKey: ecPem }), { name: 'TypeError' }, 'P-384 key for ES256');
  t.doesNotThrow(make({ algorithms: ['ES384'], publicKey: ecPem }), 'P-384 key for ES384');
  t.throws(make({ algorithms: ['ES384'], publicKey: 'not a pem' }), 'garbage PEM');
  const priv = ec.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  t.throws(make({ algorithms: ['ES384'], publicKey: priv }), { name: 'TypeError' }, 'a private key where a public key belongs');
});

t.test('timing: cached check against uncached HS256 and ES256 verification', async (t) => {
  const { clock, auth } = setup();
  const es = await generateKeyPair('ES256', { extractable: true });
  const jwks = await startJwksServer({ keys: [{ ...(await exportJWK(es.publicKey)), kid: 'e', alg: 'ES256' }] });
  t.teardown(() => jwks.close());
  const esAuth = new JwtAuthenticator(jwtConfig({ secret: undefined, algorithms: ['ES256'], jwksUri: jwks.url }), rankOf, clock);
  t.teardown(() => esAuth.close());
  await esAuth.start();
  const pem = await exportSPKI(es.publicKey);
  const pemAuth = new JwtAuthenticator(jwtConfig({ secret: undefined, algorithms: ['ES256'], publicKey: pem }), rankOf, clock);
  const n = 2000;
  const s = Math.floor(clock.now() / 1000);
  const hsTokens = await Promise.all(Array.from({ length: n }, (_, i) => hs({ sub: `u${i}` }, clock.now())));
  const esTokens = await Promise.all(
    Array.from({ length: n }, (_, i) => new SignJWT({ sub: `u${i}` }).setProtectedHeader({ alg: 'ES256', kid: 'e' }).setIssuer(ISS).setIssuedAt(s).setExpirationTime(s + 600).sign(es.privateKey)),
  );
  const perOp = async (label: string, tokens: string[], a: JwtAuthenticator) => {
    const start = process.hrtime.bigint();
    for (const tok of tokens) await a.verify(tok);
    const us = Number(process.hrtime.bigint() - start) / 1000 / tokens.length;
    return { label, us };
  };
  const uncachedHs = await perOp('uncached HS256', hsTokens, auth);
  const uncachedEsJwks = await perOp('uncached ES256 (JWKS)', esTokens, esAuth);
  const uncachedEsPem = await perOp('uncached ES256 (PEM)', esTokens, pemAuth);
  // Cached: the synchronous path only, repeated over tokens already verified.
  const rounds = 50;
  const start = process.hrtime.bigint();
  let hits = 0;
  for (let r = 0; r < rounds; r++) for (const tok of hsTokens) if (!(auth.verify(tok) instanceof Promise)) hits++;
  const cachedUs = Number(process.hrtime.bigint() - start) / 1000 / (rounds * n);
  t.equal(hits, rounds * n, 'every repeat was a synchronous hit');
  for (const r of [uncachedHs, uncachedEsJwks, uncachedEsPem]) t.comment(`${r.label}: ${r.us.toFixed(1)} µs/token`);
  t.comment(`cached check: ${cachedUs.toFixed(2)} µs/token (${(uncachedHs.us / cachedUs).toFixed(0)}x faster than HS256, ${(uncachedEsJwks.us / cachedUs).toFixed(0)}x than ES256)`);
  t.ok(cachedUs < uncachedHs.us, 'a hit is cheaper than an HS256 verification');
  t.ok(cachedUs < uncachedEsJwks.us, 'and than an ES256 verification');
});
