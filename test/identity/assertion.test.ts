import t from 'tap';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { generateKeyPairSync } from 'node:crypto';
import { calculateJwkThumbprint, createLocalJWKSet, createRemoteJWKSet, decodeProtectedHeader, jwtVerify, type JWK } from 'jose';
import { AssertionSigner, AssertionKeyError, ASSERTION_KEY_NAME, type AssertionKeyStore } from '../../src/identity/assertion.js';
import type { Identity } from '../../src/authn/types.js';

function identity(over: Partial<Identity> = {}): Identity {
  const scopes = over.scopes ?? ['films:read', 'reviews:write'];
  return {
    method: 'apiKey', subject: 'alice', role: 'premium', roleRank: 1, scopes, scopesHeader: scopes.join(' '), keyId: 'k_123',
    audiences: [], issuedAt: 0, revocationId: 'key:k_123', ...over,
  };
}

class MapKv implements AssertionKeyStore {
  readonly map = new Map<string, string>();
  reads = 0;
  async get(name: string) { this.reads++; return this.map.get(name); }
  async set(name: string, value: string) { this.map.set(name, value); }
}

/** Like the key store's kv: insert unless present, return what is stored. */
class AtomicKv extends MapKv {
  async setIfAbsent(name: string, value: string) {
    await new Promise((r) => setImmediate(r));
    if (!this.map.has(name)) this.map.set(name, value);
    return this.map.get(name)!;
  }
}

function movingClock(start = 1_750_000_000_000) {
  const c = { t: start, now: () => c.t };
  return c;
}

async function code(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    return (err as { code?: string }).code;
  }
}

t.test('an upstream verifies the assertion with the published key set', async (t) => {
  const clock = movingClock();
  const signer = await AssertionSigner.create({ ttlMs: 60_000, clock });
  t.equal(signer.source, 'ephemeral');
  const token = await signer.sign(identity(), 'films-api');
  const jwks = signer.jwks();
  t.equal(jwks.keys.length, 1);
  const k = jwks.keys[0]!;
  t.same({ kty: k.kty, crv: k.crv, alg: k.alg, use: k.use, kid: k.kid }, { kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA', use: 'sig', kid: signer.kid });
  t.equal(k.d, undefined, 'no private part in the key set');
  t.equal(k.kid, await calculateJwkThumbprint({ kty: 'OKP', crv: 'Ed25519', x: k.x! }), 'kid is the RFC 7638 thumbprint');
  t.same(decodeProtectedHeader(token), { alg: 'EdDSA', kid: signer.kid, typ: 'JWT' });

  const { payload } = await jwtVerify(token, createLocalJWKSet(jwks), {
    issuer: 'portcullis', audience: 'films-api', algorithms: ['EdDSA'], currentDate: new Date(clock.t),
  });
  const iat = Math.floor(clock.t / 1000);
  t.same(payload, {
    iss: 'portcullis', sub: 'alice', aud: 'films-api', role: 'premium', scopes: 'films:read reviews:write', amr: ['apiKey'], key_id: 'k_123', iat, exp: iat + 60,
  });

  t.equal(await code(jwtVerify(token, createLocalJWKSet(jwks), { issuer: 'portcullis', audience: 'billing', currentDate: new Date(clock.t) })), 'ERR_JWT_CLAIM_VALIDATION_FAILED', 'another upstream refuses it');
  t.equal(await code(jwtVerify(token, createLocalJWKSet(jwks), { issuer: 'portcullis', audience: 'films-api', currentDate: new Date(clock.t + 61_000) })), 'ERR_JWT_EXPIRED');

  // Over HTTP, the way an upstream reads /.well-known/jwks.json from the admin port.
  const server = http.createServer((_req, res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end(JSON.stringify(signer.jwks())); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const remote = createRemoteJWKSet(new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`));
  const viaHttp = await jwtVerify(token, remote, { issuer: 'portcullis', audience: 'films-api', currentDate: new Date(clock.t) });
  t.equal(viaHttp.payload.sub, 'alice');

  const jwtToken = await signer.sign(identity({ method: 'jwt', keyId: undefined, scopes: [], subject: 'u-9', role: 'basic' }), 'films-api');
  const jwtPayload = (await jwtVerify(jwtToken, createLocalJWKSet(jwks), { currentDate: new Date(clock.t) })).payload;
  t.same(jwtPayload.amr, ['jwt']);
  t.equal(jwtPayload.scopes, '');
  t.notOk('key_id' in jwtPayload, 'no key_id claim without a key id');
});

t.test('a tampered or foreign assertion fails verification', async (t) => {
  const clock = movingClock();
  const signer = await AssertionSigner.create({ ttlMs: 60_000, clock });
  const other = await AssertionSigner.create({ ttlMs: 60_000, clock });
  const token = await signer.sign(identity(), 'films-api');
  const jwks = createLocalJWKSet(signer.jwks());
  const opts = { issuer: 'portcullis', audience: 'films-api', algorithms: ['EdDSA'], currentDate: new Date(clock.t) };
  const [h, p, s] = token.split('.') as [string, string, string];
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString());
  const forged = Buffer.from(JSON.stringify({ ...claims, role: 'admin' })).toString('base64url');
  const flipped = (s[0] === 'A' ? 'B' : 'A') + s.slice(1);
  const cases: Array<[string, string, string]> = [
    ['role changed in the payload', `${h}.${forged}.${s}`, 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED'],
    ['signature altered', `${h}.${p}.${flipped}`, 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED'],
    ['signature removed', `${h}.${p}.`, 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED'],
    ['alg none', `${Buffer.from(JSON.stringify({ alg: 'none', kid: signer.kid })).toString('base64url')}.${p}.`, 'ERR_JOSE_ALG_NOT_ALLOWED'],
    ['signed by another key', await other.sign(identity(), 'films-api'), 'ERR_JWKS_NO_MATCHING_KEY'],
  ];
  t.equal(await code(jwtVerify(token, jwks, opts)), undefined, 'the untouched token verifies');
  for (const [name, bad, expected] of cases) t.equal(await code(jwtVerify(bad, jwks, opts)), expected, name);
});

t.test('cached per identity and audience while more than half the lifetime remains', async (t) => {
  const clock = movingClock();
  const signer = await AssertionSigner.create({ ttlMs: 60_000, clock });
  const id = identity();
  const first = signer.sign(id, 'films-api');
  t.type(first, Promise, 'first call signs');
  t.equal(signer.sign(id, 'films-api'), first, 'concurrent callers share one signature in flight');
  const token = await first;
  const again = signer.sign(id, 'films-api');
  t.equal(typeof again, 'string', 'then a string, synchronously');
  t.equal(again, token);
  clock.t += 29_000;
  t.equal(signer.sign(id, 'films-api'), token, 'at 29 s of 60 s: still the cached one');

  const billing = await signer.sign(id, 'billing');
  t.not(billing, token, 'each upstream gets its own audience');
  t.equal(signer.sign(identity(), 'films-api') instanceof Promise, true, 'another identity object is signed separately');

  clock.t += 2_000;
  const renewed = signer.sign(id, 'films-api');
  t.type(renewed, Promise, 'past half its lifetime: signed anew');
  const next = await renewed;
  t.not(next, token);
  const { payload } = await jwtVerify(next, createLocalJWKSet(signer.jwks()), { currentDate: new Date(clock.t) });
  t.equal(payload.iat, Math.floor(clock.t / 1000));
  t.equal(signer.sign(id, 'films-api'), next);
});

t.test('an assertion never outlives the credential it describes', async (t) => {
  const clock = movingClock();
  const signer = await AssertionSigner.create({ ttlMs: 60_000, clock });
  const id = identity({ expiresAt: clock.t + 10_000 });
  const token = await signer.sign(id, 'films-api');
  const { payload } = await jwtVerify(token, createLocalJWKSet(signer.jwks()), { currentDate: new Date(clock.t) });
  t.equal(payload.exp, Math.floor((clock.t + 10_000) / 1000));
  clock.t += 5_001;
  t.type(signer.sign(id, 'films-api'), Promise, 'renewed after half of the shortened lifetime');
});

t.test('a generated key is persisted and shared through the kv', async (t) => {
  for (const [name, Kv] of [['get/set', MapKv], ['setIfAbsent', AtomicKv]] as const) {
    const kv = new Kv();
    const a = await AssertionSigner.create({ ttlMs: 60_000, kv });
    t.equal(a.source, 'generated', `${name}: first instance generates`);
    const stored = JSON.parse(kv.map.get(ASSERTION_KEY_NAME)!) as JWK;
    t.same(Object.keys(stored).sort(), ['crv', 'd', 'kty', 'x'], `${name}: the private JWK is stored`);
    const b = await AssertionSigner.create({ ttlMs: 60_000, kv });
    t.equal(b.source, 'stored', `${name}: a restart reads it`);
    t.equal(b.kid, a.kid, `${name}: same key id`);
    const token = await a.sign(identity(), 'films-api');
    const { payload } = await jwtVerify(token, createLocalJWKSet(b.jwks()), { audience: 'films-api' });
    t.equal(payload.sub, 'alice', `${name}: one instance's assertion verifies with the other's key set`);
  }

  // Instances starting together: with insert-unless-present they still agree on one key.
  const kv = new AtomicKv();
  const signers = await Promise.all([1, 2, 3, 4].map(() => AssertionSigner.create({ ttlMs: 60_000, kv })));
  t.equal(new Set(signers.map((s) => s.kid)).size, 1, 'concurrent starts agree on one key');
  t.equal(signers.filter((s) => s.source === 'generated').length, 1, 'exactly one of them generated it');
});

t.test('a configured key: PEM (PKCS#8) or JWK, and the kv left alone', async (t) => {
  const pair = generateKeyPairSync('ed25519');
  const pem = pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const pubJwk = pair.publicKey.export({ format: 'jwk' }) as JWK;
  const expectedKid = await calculateJwkThumbprint({ kty: 'OKP', crv: 'Ed25519', x: pubJwk.x! });
  const privJwk = JSON.stringify(pair.privateKey.export({ format: 'jwk' }));
  const variants: Array<[string, string]> = [
    ['PEM', pem],
    ['PEM with escaped newlines (from an env var)', pem.trim().replace(/\n/g, '\\n')],
    ['JWK JSON', privJwk],
  ];
  for (const [name, privateKey] of variants) {
    const kv = new MapKv();
    const s = await AssertionSigner.create({ ttlMs: 60_000, privateKey, kv });
    t.equal(s.source, 'configured', name);
    t.equal(s.kid, expectedKid, `${name}: kid of the configured key`);
    t.equal(kv.reads, 0, `${name}: the kv is not consulted`);
    const token = await s.sign(identity(), 'films-api');
    const verified = await jwtVerify(token, createLocalJWKSet({ keys: [{ ...pubJwk, kid: expectedKid }] }), { audience: 'films-api' });
    t.equal(verified.payload.sub, 'alice', `${name}: verifies with the configured key's public half`);
  }
});

t.test('bad key material and an unreachable kv fail with codes', async (t) => {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const ed = generateKeyPairSync('ed25519');
  const publicOnly = JSON.stringify(ed.publicKey.export({ format: 'jwk' }));
  const spki = ed.publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const cases: Array<[string, Parameters<typeof AssertionSigner.create>[0], string]> = [
    ['RSA private key', { ttlMs: 60_000, privateKey: rsa }, 'assertion-key-invalid'],
    ['public key PEM', { ttlMs: 60_000, privateKey: spki }, 'assertion-key-invalid'],
    ['public JWK (no d)', { ttlMs: 60_000, privateKey: publicOnly }, 'assertion-key-invalid'],
    ['not JSON', { ttlMs: 60_000, privateKey: '{"kty":' }, 'assertion-key-invalid'],
    ['garbage', { ttlMs: 60_000, privateKey: 'secret' }, 'assertion-key-invalid'],
    ['ttl under a second', { ttlMs: 500 }, 'assertion-key-invalid'],
    ['kv unreachable', { ttlMs: 60_000, kv: { get: async () => { throw new Error('ECONNREFUSED'); }, set: async () => {} } }, 'assertion-key-unavailable'],
    ['kv write fails', { ttlMs: 60_000, kv: { get: async () => undefined, set: async () => { throw new Error('read-only'); } } }, 'assertion-key-unavailable'],
    ['kv holds something else', { ttlMs: 60_000, kv: { get: async () => 'not a key', set: async () => {} } }, 'assertion-key-invalid'],
  ];
  for (const [name, opts, expected] of cases) {
    const err = await AssertionSigner.create(opts).then(() => undefined, (e: unknown) => e);
    t.type(err, AssertionKeyError, name);
    t.equal((err as AssertionKeyError | undefined)?.code, expected, `${name}: ${expected}`);
  }
});

t.test('cost of signing versus a cached assertion', async (t) => {
  const signer = await AssertionSigner.create({ ttlMs: 60_000 });
  const ids = Array.from({ length: 2000 }, (_, i) => identity({ subject: `user-${i}` }));
  for (const id of ids.slice(0, 200)) await signer.sign(id, 'warmup');
  let start = performance.now();
  for (const id of ids) await signer.sign(id, 'films-api');
  const signUs = ((performance.now() - start) * 1000) / ids.length;
  const n = 200_000;
  let sync = 0;
  start = performance.now();
  for (let i = 0; i < n; i++) if (typeof signer.sign(ids[i % ids.length]!, 'films-api') === 'string') sync++;
  const cachedUs = ((performance.now() - start) * 1000) / n;
  t.equal(sync, n, 'every cached call returned a string synchronously');
  t.ok(cachedUs < signUs, `a cached assertion (${cachedUs.toFixed(3)} µs) is cheaper than signing (${signUs.toFixed(1)} µs)`);
  t.comment(`sign: ${signUs.toFixed(1)} µs per assertion; cached: ${cachedUs.toFixed(3)} µs per call`);
});
