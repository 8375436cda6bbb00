import t from 'tap';
import type { Test } from 'tap';
import { createHash } from 'node:crypto';
import { ApiKeyAuthenticator, type ApiKeyAuthenticatorOptions } from '../../src/authn/api-key/authenticator.js';
import type { Credential, Identity } from '../../src/authn/types.js';
import { systemClock, type Clock } from '../../src/clock.js';
import type { ApiKeysConfig } from '../../src/config/schema.js';
import { GatewayError } from '../../src/http/problem.js';
import { formatKey, generateKey, parseKey } from '../../src/keys/format.js';
import { verifySecret, type SecretVerifier } from '../../src/keys/hash.js';
import { KeyService } from '../../src/keys/service.js';
import { openStore } from '../../src/store/open.js';
import type { KeyStore } from '../../src/store/types.js';
import { apiKeysConfig, FAST_HASH, TestClock } from '../keys/helpers.js';
import { tempPgDatabase } from '../store/helpers.js';

const ROLES = ['basic', 'premium', 'admin'];
const rank = (role: string): number => ROLES.indexOf(role);
const HOUR = 3_600_000;

function cred(value: string): Credential {
  return { kind: 'apiKey', value, source: 'authorization' };
}

/** Counts argon2 runs and can hold them back. */
class CountingVerifier implements SecretVerifier {
  calls = 0;
  gate: Promise<void> | undefined;
  async verify(hash: string, secret: string): Promise<boolean> {
    this.calls++;
    if (this.gate) await this.gate;
    return verifySecret(hash, secret);
  }
}

/** The outcome of one authenticate call: the identity, or the problem code (and whether it threw synchronously). */
async function outcome(a: ApiKeyAuthenticator, value: string, ip = '10.0.0.1'): Promise<{ identity?: Identity; code?: string; sync: boolean; err?: GatewayError }> {
  let r: Identity | Promise<Identity>;
  try {
    r = a.authenticate(cred(value), { clientIp: ip });
  } catch (err) {
    if (!(err instanceof GatewayError)) throw err;
    return { code: err.code, sync: true, err };
  }
  if (!(r instanceof Promise)) return { identity: r, sync: true };
  try {
    return { identity: await r, sync: false };
  } catch (err) {
    if (!(err instanceof GatewayError)) throw err;
    return { code: err.code, sync: false, err };
  }
}

/** The real store with its `getKey` replaced (every other method the store's own). */
function withGetKey(store: KeyStore, getKey: KeyStore['getKey']): KeyStore {
  return new Proxy(store, {
    get(target, prop) {
      if (prop === 'getKey') return getKey;
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

interface Env {
  store: KeyStore;
  svc: KeyService;
  clock: TestClock;
  verifier: CountingVerifier;
  make(over?: Partial<ApiKeysConfig>, opts?: ApiKeyAuthenticatorOptions, clock?: Clock): ApiKeyAuthenticator;
}

async function env(t: Test, open: () => Promise<KeyStore>): Promise<Env> {
  const store = await open();
  t.teardown(() => store.close());
  await store.migrate();
  const clock = new TestClock();
  const svc = new KeyService({ store, config: apiKeysConfig({ hash: FAST_HASH }), clock, roles: ROLES });
  const verifier = new CountingVerifier();
  return {
    store,
    svc,
    clock,
    verifier,
    make(over = {}, opts = {}, c: Clock = clock) {
      const a = new ApiKeyAuthenticator(store, apiKeysConfig(over), rank, c, { verifier, ...opts });
      t.teardown(() => a.close());
      return a;
    },
  };
}

function suite(t: Test, name: string, open: () => Promise<KeyStore>): Promise<void> {
  return t.test(`ApiKeyAuthenticator on ${name}`, async (t) => {
    const e = await env(t, open);
    const { svc, clock, verifier } = e;

    await t.test('a valid key yields the identity; the second request is a synchronous cache hit', async (t) => {
      const a = e.make();
      const k = await svc.create({ subject: 'alice', role: 'premium', scopes: ['r', 'w'], audiences: ['api'], allowIps: ['10.0.0.0/8', '::1'], expiresIn: 2 * HOUR });
      const before = verifier.calls;
      const first = await outcome(a, k.key);
      t.equal(first.code, undefined);
      t.equal(first.sync, false, 'the first request verifies asynchronously');
      const id = first.identity!;
      t.same(
        { ...id, allowIp: undefined },
        {
          method: 'apiKey', subject: 'alice', role: 'premium', roleRank: 1, scopes: ['r', 'w'], scopesHeader: 'r w', keyId: k.id,
          audiences: ['api'], allowIp: undefined, issuedAt: k.createdAt, expiresAt: k.expiresAt, revocationId: `key:${k.id}`,
          cachedUntil: clock.now() + apiKeysConfig().cache.ttl,
        },
        'the identity, cached for the cache TTL (the key ends later)',
      );
      t.ok(Object.isFrozen(id), 'identity is frozen');
      t.equal(id.allowIp?.('10.9.8.7'), true);
      t.equal(id.allowIp?.('::ffff:10.9.8.7'), true, 'IPv4-mapped IPv6');
      t.equal(id.allowIp?.('::1'), true);
      t.equal(id.allowIp?.('192.168.0.1'), false);
      t.equal(verifier.calls - before, 1, 'one argon2 run');
      const lookups = a.stats.storeLookups;
      const second = a.authenticate(cred(k.key), { clientIp: '10.0.0.1' });
      t.notOk(second instanceof Promise, 'a cache hit returns the identity itself, not a Promise');
      t.equal(second, id, 'the cached identity');
      t.equal(verifier.calls - before, 1, 'no argon2 on a hit');
      t.equal(a.stats.storeLookups, lookups, 'no store access on a hit');
      t.equal(a.stats.cacheHits, 1);
      const open = await svc.create({ subject: 'bob', role: 'basic' });
      t.equal((await outcome(a, open.key)).identity?.allowIp, undefined, 'no allow-list: any address');
    });

    await t.test('malformed and mistyped keys are refused without the store', async (t) => {
      const a = e.make();
      const k = await svc.create({ subject: 'carol', role: 'basic' });
      const i = k.key.length - 10;
      const typo = k.key.slice(0, i) + (k.key[i] === 'a' ? 'b' : 'a') + k.key.slice(i + 1);
      for (const [what, value] of [
        ['checksum failure', typo],
        ['truncated', k.key.slice(0, -1)],
        ['native prefix, wrong shape', 'pcl_short'],
        ['too short for a legacy key', 'abc'],
        ['whitespace', 'legacy key with spaces'],
        ['non-ASCII', 'légacy-key-123'],
      ] as const) {
        const r = await outcome(a, value);
        t.equal(r.code, 'key-invalid', what);
        t.equal(r.sync, true, `${what}: refused synchronously`);
      }
      t.equal(a.stats.storeLookups, 0, 'the store was never asked');
      t.equal(a.stats.malformed, 6);
    });

    await t.test('wrong secret and unknown id: key-invalid, then the negative cache', async (t) => {
      const a = e.make();
      const k = await svc.create({ subject: 'dave', role: 'basic' });
      const id = parseKey(k.key, 'pcl')!.id;
      const wrong = generateKey('pcl', id).key;
      const before = verifier.calls;
      const r = await outcome(a, wrong);
      t.equal(r.code, 'key-invalid');
      t.equal(r.err?.message, 'The API key is not valid.');
      t.equal(verifier.calls - before, 1);
      const again = await outcome(a, wrong);
      t.equal(again.code, 'key-invalid');
      t.equal(again.sync, true, 'refused from the negative cache');
      t.equal(verifier.calls - before, 1, 'without argon2');
      t.equal(a.stats.negativeHits, 1);
      clock.advance(5_001);
      await outcome(a, wrong);
      t.equal(verifier.calls - before, 2, 'after negativeCacheTtl it is verified again');
      const unknown = await outcome(a, generateKey('pcl').key);
      t.equal(unknown.code, 'key-invalid');
      t.equal(unknown.err?.message, r.err?.message, 'unknown id and wrong secret read the same');
      t.equal(verifier.calls - before, 2, 'unknown id: no argon2');
      t.equal((await outcome(a, k.key)).code, undefined, 'the right key still works');
    });

    await t.test('expiry, and the cache never outlives it', async (t) => {
      const a = e.make();
      const k = await svc.create({ subject: 'erin', role: 'basic', expiresIn: 30_000 });
      const first = await outcome(a, k.key);
      t.equal(first.code, undefined);
      t.equal((first.identity as { cachedUntil?: number }).cachedUntil, k.expiresAt, 'cached until the key ends, before cache.ttl');
      clock.advance(29_000);
      t.equal((await outcome(a, k.key)).sync, true, 'still cached');
      clock.advance(1_000);
      const r = await outcome(a, k.key);
      t.equal(r.code, 'key-expired', 'expired although cache.ttl (60s) has not passed');
      const k2 = await svc.create({ subject: 'erin', role: 'basic' });
      await outcome(a, k2.key);
      clock.advance(60_001);
      const lookups = a.stats.storeLookups;
      t.equal((await outcome(a, k2.key)).code, undefined);
      t.equal(a.stats.storeLookups, lookups + 1, 'after cache.ttl the record is read again');
    });

    await t.test('not-before', async (t) => {
      const a = e.make();
      const k = await svc.create({ subject: 'fay', role: 'basic', notBeforeIn: 600_000 });
      const r = await outcome(a, k.key);
      t.equal(r.code, 'key-invalid');
      t.match(r.err?.message, /not yet valid/);
      clock.advance(600_000);
      t.equal((await outcome(a, k.key)).code, undefined, 'valid from not-before on');
    });

    await t.test('revocation: refused from the store; cached identities evicted by id and by subject', async (t) => {
      const a = e.make();
      const k1 = await svc.create({ subject: 'gus', role: 'basic' });
      const k2 = await svc.create({ subject: 'gus', role: 'basic' });
      const other = await svc.create({ subject: 'hal', role: 'basic' });
      for (const k of [k1, k2, other]) await outcome(a, k.key);
      await svc.revoke(k1.id);
      t.equal((await outcome(a, k1.key)).sync, true, 'still cached until evicted');
      a.evict(`key:${k1.id}`);
      t.equal((await outcome(a, k1.key)).code, 'key-revoked');
      t.equal((await outcome(a, k1.key)).sync, true, 'revoked: negative-cached');
      await svc.revokeSubject('gus');
      a.evictSubject('gus');
      t.equal((await outcome(a, k2.key)).code, 'key-revoked');
      t.equal((await outcome(a, other.key)).sync, true, 'other subjects stay cached');
    });

    await t.test('an eviction during a verification keeps its result out of the cache', async (t) => {
      const a = e.make();
      const k = await svc.create({ subject: 'ida', role: 'basic' });
      let open!: () => void;
      verifier.gate = new Promise((r) => (open = r));
      const p = outcome(a, k.key);
      // Evict once the verification is under way (past the store lookup, inside argon2).
      for (let i = 0; i < 200 && a.verificationLoad.active < 1; i++) await new Promise((r) => setTimeout(r, 25));
      a.evictSubject('ida');
      open();
      verifier.gate = undefined;
      t.equal((await p).code, undefined);
      t.equal((await outcome(a, k.key)).sync, false, 'next request is a miss');
    });

    await t.test('rotation with grace', async (t) => {
      const a = e.make();
      const old = await svc.create({ subject: 'jo', role: 'basic' });
      const next = await svc.rotate(old.id, HOUR);
      t.equal((await outcome(a, old.key)).code, undefined, 'old key works during grace');
      t.equal((await outcome(a, old.key)).identity?.expiresAt, next.graceUntil, 'its identity ends with the grace');
      t.equal((await outcome(a, next.key)).code, undefined, 'successor works');
      clock.advance(HOUR);
      t.equal((await outcome(a, old.key)).code, 'key-expired', 'grace over');
      t.equal((await outcome(a, next.key)).code, undefined);
    });

    await t.test('legacy keys: looked up by digest, no argon2', async (t) => {
      const a = e.make();
      await svc.importKeys(JSON.stringify({ key: 'Legacy_Key-000111222', subject: 'kim', role: 'admin', scopes: ['all'] }), 'in.jsonl');
      const digest = createHash('sha256').update('Legacy_Key-000111222').digest('hex');
      const row = await e.store.getKeyBySha256(digest);
      const before = verifier.calls;
      const r = await outcome(a, 'Legacy_Key-000111222');
      t.same([r.identity?.subject, r.identity?.roleRank, r.identity?.keyId, r.identity?.revocationId], ['kim', 2, row!.id, `legacy:${digest}`]);
      t.equal(verifier.calls, before, 'no argon2 for legacy keys');
      t.equal((await outcome(a, 'Legacy_Key-000111222')).sync, true, 'cached');
      t.equal((await outcome(a, 'Legacy_Key-000111223')).code, 'key-invalid', 'unknown legacy key');
      await svc.revoke(row!.id);
      a.evict(`legacy:${digest}`);
      t.equal((await outcome(a, 'Legacy_Key-000111222')).code, 'key-revoked');
    });

    await t.test('concurrent first requests share one verification', async (t) => {
      const a = e.make();
      const k = await svc.create({ subject: 'lee', role: 'basic' });
      const before = verifier.calls;
      const results = await Promise.all(Array.from({ length: 25 }, () => outcome(a, k.key)));
      t.equal(verifier.calls - before, 1, 'one argon2 run for 25 requests');
      t.equal(a.stats.coalesced, 24);
      t.equal(a.stats.storeLookups, 1);
      t.ok(results.every((r) => r.identity === results[0]!.identity), 'all got the same identity');
    });

    await t.test('different secrets for one key id share one store read; never across an eviction', async (t) => {
      const k = await svc.create({ subject: 'lou', role: 'basic' });
      const id = parseKey(k.key, 'pcl')!.id;
      // The real store behind a gate that holds every read of this key id until opened.
      const reads: string[] = [];
      let release!: () => void;
      let gate: Promise<void> | undefined;
      const gated = withGetKey(e.store, async (keyId) => {
        reads.push(keyId);
        if (gate !== undefined) await gate;
        return e.store.getKey(keyId);
      });
      const a = new ApiKeyAuthenticator(gated, apiKeysConfig({ failedAttempts: { max: 1000, window: 60_000, delay: 0 } }), rank, clock, { verifier });
      t.teardown(() => a.close());
      gate = new Promise((r) => (release = r));
      // 40 forgeries for the holder's key id from 40 addresses, and the holder, at once.
      const forgeries = Array.from({ length: 40 }, (_, i) => outcome(a, generateKey('pcl', id).key, `198.51.100.${i + 1}`));
      const holder = outcome(a, k.key, '192.0.2.10');
      await new Promise((r) => setTimeout(r, 20));
      t.same(reads, [id], 'one read of the key id for 41 requests while it runs');
      t.equal(a.stats.sharedLookups, 40);
      release();
      gate = undefined;
      t.same((await Promise.all(forgeries)).map((r) => r.code), Array(40).fill('key-invalid'), 'every forgery refused');
      t.equal((await holder).code, undefined, 'the holder admitted');
      t.equal(reads.length, 1, 'no other read');

      // A read that began before an eviction is not joined by a request after it.
      a.evict(`key:${id}`);
      const before = reads.length;
      gate = new Promise((r) => (release = r));
      const early = outcome(a, generateKey('pcl', id).key, '198.51.100.200');
      await new Promise((r) => setTimeout(r, 5));
      a.evict(`key:${id}`);
      const late = outcome(a, k.key, '192.0.2.10');
      await new Promise((r) => setTimeout(r, 5));
      t.equal(reads.length - before, 2, 'the request after the eviction read the key again');
      release();
      gate = undefined;
      t.equal((await early).code, 'key-invalid');
      t.equal((await late).code, undefined);

      // A failed read fails every request that joined it, and the next one reads again.
      let fail = true;
      let failed = 0;
      const failing = withGetKey(e.store, async (keyId) => {
        await new Promise((r) => setTimeout(r, 10));
        if (fail) {
          failed++;
          throw new Error('connection reset');
        }
        return e.store.getKey(keyId);
      });
      const b = new ApiKeyAuthenticator(failing, apiKeysConfig(), rank, clock, { verifier });
      t.teardown(() => b.close());
      const both = await Promise.all([outcome(b, generateKey('pcl', id).key, '198.51.100.201'), outcome(b, k.key, '192.0.2.11')]);
      t.same(both.map((r) => r.code), ['store-unavailable', 'store-unavailable']);
      t.equal(failed, 1, 'one failed read for both');
      fail = false;
      t.equal((await outcome(b, k.key, '192.0.2.11')).code, undefined, 'read again once the store answers');
    });

    await t.test('failed-attempt limiting per key id and per client', async (t) => {
      const a = e.make({ failedAttempts: { max: 3, window: 60_000, delay: 0 } });
      const k = await svc.create({ subject: 'max', role: 'basic' });
      const id = parseKey(k.key, 'pcl')!.id;
      // The holder was verified here once: its later requests never run argon2 again.
      t.equal((await outcome(a, k.key, '192.0.2.1')).code, undefined);
      const before = verifier.calls;
      for (let i = 0; i < 3; i++) t.equal((await outcome(a, generateKey('pcl', id).key, '198.51.100.7')).code, 'key-invalid', `wrong secret ${i + 1}`);
      t.equal(verifier.calls - before, 3);
      const limited = await outcome(a, generateKey('pcl', id).key, '198.51.100.7');
      t.equal(limited.code, 'rate-limited', '4th attempt: 429');
      t.ok(Number(limited.err?.headers?.['retry-after']) > 0, 'with Retry-After');
      // The key id is under attack: a client that has not failed still gets its one try
      // (it may be the holder), and is refused once it has failed.
      t.equal((await outcome(a, generateKey('pcl', id).key, '203.0.113.9')).code, 'key-invalid', 'a fresh address gets one try');
      t.equal((await outcome(a, generateKey('pcl', id).key, '203.0.113.9')).code, 'rate-limited', 'and is refused once it has failed');
      t.equal(verifier.calls - before, 4, 'one argon2 run for the fresh address, none while refused');
      // A holder never verified on this instance, from a clean address, is admitted.
      const cold = e.make({ failedAttempts: { max: 3, window: 60_000, delay: 0 } });
      for (let i = 0; i < 3; i++) await outcome(cold, generateKey('pcl', id).key, '198.51.100.7');
      t.equal((await outcome(cold, generateKey('pcl', id).key, '198.51.100.7')).code, 'rate-limited', 'the forger is refused');
      t.equal((await outcome(cold, k.key, '192.0.2.1')).code, undefined, 'the holder is verified while its key id is under attack');
      t.equal((await outcome(cold, k.key, '198.51.100.7')).code, undefined, 'a proven key is admitted from anywhere');
      clock.advance(61_000);
      t.equal((await outcome(a, k.key, '192.0.2.1')).code, undefined, 'the holder (cache expired) is still admitted');
      t.equal(a.stats.provenReuses, 1, 'by re-reading the record, without argon2');
      for (let i = 0; i < 3; i++) await outcome(a, generateKey('pcl', id).key, '198.51.100.7');
      clock.advance(61_000);
      t.equal((await outcome(a, k.key, '192.0.2.1')).code, undefined, 'holder admitted while the id is limited');

      // Per client: wrong keys for many ids from one address.
      const b = e.make({ failedAttempts: { max: 3, window: 60_000, delay: 0 } });
      for (let i = 0; i < 3; i++) t.equal((await outcome(b, generateKey('pcl').key, '198.51.100.8')).code, 'key-invalid');
      t.equal((await outcome(b, generateKey('pcl').key, '198.51.100.8')).code, 'rate-limited', 'the client is limited');
      t.equal((await outcome(b, 'unknown-legacy-key-1', '198.51.100.8')).code, 'rate-limited', 'legacy lookups too');
      const fresh = await svc.create({ subject: 'ned', role: 'basic' });
      t.equal((await outcome(b, fresh.key, '198.51.100.9')).code, undefined, 'other clients are not affected');
      clock.advance(60_000);
      t.equal((await outcome(b, generateKey('pcl').key, '198.51.100.8')).code, 'key-invalid', 'the window passes');
    });

    await t.test('verification queue: bounded, overflow is 503', async (t) => {
      const a = e.make({ maxConcurrentVerifications: 1, verificationQueue: 1 });
      const keys = await Promise.all([1, 2, 3].map((i) => svc.create({ subject: `q${i}`, role: 'basic' })));
      let open!: () => void;
      verifier.gate = new Promise((r) => (open = r));
      const first = outcome(a, keys[0]!.key);
      const second = outcome(a, keys[1]!.key);
      // Both have looked their key up in the store once one runs argon2 and one waits for it.
      for (let i = 0; i < 200 && (a.verificationLoad.active < 1 || a.verificationLoad.queued < 1); i++) await new Promise((r) => setTimeout(r, 25));
      t.same(a.verificationLoad, { active: 1, queued: 1 });
      const third = await outcome(a, keys[2]!.key);
      t.equal(third.code, 'store-unavailable', 'queue full: 503');
      t.equal(third.err?.headers?.['retry-after'], '1');
      t.equal(a.stats.overloaded, 1);
      open();
      verifier.gate = undefined;
      t.equal((await first).code, undefined);
      t.equal((await second).code, undefined);
      t.equal((await outcome(a, keys[2]!.key)).code, undefined, 'admitted once there is room');
    });

    await t.test('a store failure is store-unavailable', async (t) => {
      const other = await open();
      await other.migrate();
      const s2 = new KeyService({ store: other, config: apiKeysConfig({ hash: FAST_HASH }), clock });
      const k = await s2.create({ subject: 'o', role: 'basic' });
      const a = new ApiKeyAuthenticator(other, apiKeysConfig(), rank, clock, { verifier });
      await other.close();
      const r = await outcome(a, k.key);
      t.equal(r.code, 'store-unavailable');
      t.equal(r.err?.status, 503);
      await a.close();
    });

    await t.test('last used: batched, one write per key per flush, flushed on close', async (t) => {
      let writes = 0;
      const counting = new Proxy(e.store, {
        get(target, prop, recv) {
          if (prop === 'touchLastUsed') return (m: ReadonlyMap<string, number>) => { writes++; return target.touchLastUsed(m); };
          const v = Reflect.get(target, prop, recv);
          return typeof v === 'function' ? v.bind(target) : v;
        },
      });
      const a = new ApiKeyAuthenticator(counting, apiKeysConfig(), rank, clock, { verifier });
      const k1 = await svc.create({ subject: 'pam', role: 'basic' });
      const k2 = await svc.create({ subject: 'pam', role: 'basic' });
      for (let i = 0; i < 20; i++) {
        clock.advance(10);
        await outcome(a, k1.key);
        await outcome(a, k2.key);
      }
      t.equal(writes, 0, 'no write per request');
      await a.flushLastUsed();
      t.equal(writes, 1, 'one batched write');
      t.equal((await e.store.getKey(k1.id))?.lastUsedAt, clock.now());
      await a.flushLastUsed();
      t.equal(writes, 1, 'nothing pending: no write');
      clock.advance(10);
      await outcome(a, k1.key);
      await a.close();
      t.equal(writes, 2, 'close flushes');
      t.equal((await e.store.getKey(k1.id))?.lastUsedAt, clock.now());
    });
  }).then(() => undefined);
}

/**
 * Flood: one client hammers a real key id with wrong secrets while the key's holder
 * keeps using it. Real argon2 parameters, real time; the holder's cache entry expires
 * every 200 ms, so it keeps going back to the store while the flood runs.
 */
function flood(t: Test, name: string, open: () => Promise<KeyStore>): Promise<void> {
  return t.test(`flood of wrong secrets on ${name}`, async (t) => {
    const store = await open();
    t.teardown(() => store.close());
    await store.migrate();
    const svc = new KeyService({ store, config: apiKeysConfig(), roles: ROLES });
    const k = await svc.create({ subject: 'victim', role: 'basic' });
    const id = parseKey(k.key, 'pcl')!.id;
    let argon2Runs = 0;
    const a = new ApiKeyAuthenticator(store, apiKeysConfig({ cache: { max: 1000, ttl: 200 } }), rank, systemClock, {
      verifier: { verify: (h, s) => { argon2Runs++; return verifySecret(h, s); } },
    });
    t.teardown(() => a.close());
    t.equal((await outcome(a, k.key, '192.0.2.10')).code, undefined, 'holder verified once before the flood');

    const holder = async (until: number, stats: { ok: number; failed: number; codes: Set<string> }): Promise<void> => {
      while (Date.now() < until) {
        const r = await outcome(a, k.key, '192.0.2.10');
        if (r.identity) stats.ok++;
        else {
          stats.failed++;
          stats.codes.add(r.code!);
        }
        await new Promise((r) => setImmediate(r));
      }
    };
    const alone = { ok: 0, failed: 0, codes: new Set<string>() };
    await holder(Date.now() + 1000, alone);

    const duration = 2000;
    const end = Date.now() + duration;
    const attack = { sent: 0, limited: 0, invalid: 0, other: 0 };
    const legit = { ok: 0, failed: 0, codes: new Set<string>() };
    const attacker = async (): Promise<void> => {
      while (Date.now() < end) {
        const r = await outcome(a, formatKey('pcl', id, generateKey('pcl').secret), '198.51.100.66');
        attack.sent++;
        if (r.code === 'rate-limited') attack.limited++;
        else if (r.code === 'key-invalid') attack.invalid++;
        else attack.other++;
        await new Promise((r) => setImmediate(r));
      }
    };
    const reads = a.stats.provenReuses;
    await Promise.all([attacker(), attacker(), attacker(), attacker(), holder(end, legit)]);
    const secs = duration / 1000;
    const line = `${name}: holder alone ${alone.ok} ok/s; under flood: attacker ${(attack.sent / secs).toFixed(0)} req/s ` +
      `(${attack.limited} rate-limited, ${attack.invalid} key-invalid, ${argon2Runs - 1} argon2 runs), ` +
      `holder ${(legit.ok / secs).toFixed(0)} ok/s, ${legit.failed} failed, ${a.stats.provenReuses - reads} store re-reads without argon2`;
    t.comment(line);
    t.equal(alone.failed, 0);
    t.equal(legit.failed, 0, `every holder request succeeded${legit.codes.size ? ` (got ${[...legit.codes].join(', ')})` : ''}`);
    t.ok(legit.ok > 100, `the holder kept a useful rate (${legit.ok} in ${secs}s)`);
    t.ok(argon2Runs - 1 <= 10, `argon2 ran at most failedAttempts.max times for the flood (${argon2Runs - 1})`);
    t.ok(attack.limited > attack.invalid, 'the flood is mostly refused with 429 before argon2');
    t.ok(a.stats.provenReuses >= 5, 'the holder re-verified through the store during the flood without argon2');
  }).then(() => undefined);
}

await suite(t, 'SQLite (memory)', () => openStore('sqlite://memory'));
await flood(t, 'SQLite (memory)', () => openStore('sqlite://memory'));
const url = await tempPgDatabase(t);
if (url !== undefined) {
  await suite(t, 'PostgreSQL', () => openStore(url, { poolSize: 4 }));
  await flood(t, 'PostgreSQL', () => openStore(url, { poolSize: 4 }));
}
