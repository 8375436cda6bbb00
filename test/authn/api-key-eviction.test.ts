import t from 'tap';
import { createHash } from 'node:crypto';
import { ApiKeyAuthenticator } from '../../src/authn/api-key/authenticator.js';
import type { Identity } from '../../src/authn/types.js';
import { GatewayError } from '../../src/http/problem.js';
import { verifySecret, type SecretVerifier } from '../../src/keys/hash.js';
import { KeyService } from '../../src/keys/service.js';
import { openStore } from '../../src/store/open.js';
import { apiKeysConfig, FAST_HASH, TestClock } from '../keys/helpers.js';

// A fleet evicts cached identities when a credential is revoked anywhere. The next request
// with that key must be refused after one store read: had the eviction also forgotten that
// the key was proven against its hash, every instance would first run argon2 (tens of
// milliseconds at the default parameters) just to answer key-revoked.

const ROLES = ['basic', 'admin'];

class CountingVerifier implements SecretVerifier {
  calls = 0;
  async verify(hash: string, secret: string): Promise<boolean> {
    this.calls++;
    return verifySecret(hash, secret);
  }
}

async function code(a: ApiKeyAuthenticator, key: string): Promise<string | undefined> {
  try {
    const r: Identity | Promise<Identity> = a.authenticate({ kind: 'apiKey', value: key, source: 'authorization' }, { clientIp: '10.0.0.1' });
    await r;
    return undefined;
  } catch (err) {
    if (err instanceof GatewayError) return err.code;
    throw err;
  }
}

const store = await openStore('sqlite://memory', { migrate: true });
t.teardown(() => store.close());
const clock = new TestClock();
const svc = new KeyService({ store, config: apiKeysConfig({ hash: FAST_HASH }), clock, roles: ROLES });
const verifier = new CountingVerifier();
const a = new ApiKeyAuthenticator(store, apiKeysConfig({ negativeCacheTtl: 1 }), (r) => ROLES.indexOf(r), clock, { verifier });
t.teardown(() => a.close());

t.test('a revoked key is refused after an eviction without argon2', async (t) => {
  const k = await svc.create({ subject: 'uma', role: 'basic' });
  t.equal(await code(a, k.key), undefined, 'verified once');
  t.equal(verifier.calls, 1);
  await svc.revoke(k.id);
  a.evict(`key:${k.id}`);
  const lookups = a.stats.storeLookups;
  t.equal(await code(a, k.key), 'key-revoked');
  t.equal(verifier.calls, 1, 'no second argon2 run');
  t.equal(a.stats.storeLookups, lookups + 1, 'one store read');
});

t.test('an update or a rotation grace is re-read after an eviction, without argon2', async (t) => {
  const k = await svc.create({ subject: 'ursula', role: 'basic', scopes: ['read'] });
  const first = await a.authenticate({ kind: 'apiKey', value: k.key, source: 'authorization' }, { clientIp: '10.0.0.1' });
  const runs = verifier.calls;
  await svc.update(k.id, { role: 'admin', scopes: ['read', 'write'] });
  t.same([(await a.authenticate({ kind: 'apiKey', value: k.key, source: 'authorization' }, { clientIp: '10.0.0.1' })).role], [first.role], 'cached: the old grants until evicted');
  a.evict(`key:${k.id}`);
  const updated = await a.authenticate({ kind: 'apiKey', value: k.key, source: 'authorization' }, { clientIp: '10.0.0.1' });
  t.same([updated.role, updated.scopes], ['admin', ['read', 'write']], 'the new grants once evicted');
  await svc.rotate(k.id, 5_000);
  a.evictAll();
  const rotating = await a.authenticate({ kind: 'apiKey', value: k.key, source: 'authorization' }, { clientIp: '10.0.0.1' });
  t.equal(rotating.expiresAt, clock.now() + 5_000, 'after evictAll the cached copy carries the grace end');
  clock.advance(5_000);
  t.equal(await code(a, k.key), 'key-expired', 'and ends exactly there');
  t.equal(verifier.calls, runs, 'no argon2 run for any of it');
});

t.test('the same after a subject-wide eviction', async (t) => {
  const k1 = await svc.create({ subject: 'vic', role: 'basic' });
  const k2 = await svc.create({ subject: 'vic', role: 'basic' });
  t.equal(await code(a, k1.key), undefined);
  t.equal(await code(a, k2.key), undefined);
  const runs = verifier.calls;
  await svc.revokeSubject('vic');
  a.evictSubject('vic');
  t.equal(await code(a, k1.key), 'key-revoked');
  t.equal(await code(a, k2.key), 'key-revoked');
  t.equal(verifier.calls, runs, 'no argon2 run for either key');
});

/** Whether the key is answered from the cache (synchronously); a miss is verified and cached again. */
async function cachedNow(a: ApiKeyAuthenticator, key: string): Promise<boolean> {
  const r = a.authenticate({ kind: 'apiKey', value: key, source: 'authorization' }, { clientIp: '10.0.0.1' });
  if (r instanceof Promise) {
    await r;
    return false;
  }
  return true;
}

t.test('keys of one subject: evicting one by id keeps the others, the subject eviction drops them all', async (t) => {
  const a = new ApiKeyAuthenticator(store, apiKeysConfig(), (r) => ROLES.indexOf(r), clock, { verifier });
  t.teardown(() => a.close());
  const [k1, k2, k3] = await Promise.all([1, 2, 3].map(() => svc.create({ subject: 'wes', role: 'basic' })));
  const other = await svc.create({ subject: 'xan', role: 'basic' });
  const all = [k1!, k2!, k3!, other];
  for (const k of all) t.equal(await cachedNow(a, k.key), false, 'first request verifies');
  for (const k of all) t.equal(await cachedNow(a, k.key), true, 'then it is cached');

  a.evict(`key:${k1!.id}`);
  t.equal(await cachedNow(a, k2!.key), true, 'a second key of the subject stays');
  t.equal(await cachedNow(a, k3!.key), true, 'a third one too');
  t.equal(await cachedNow(a, k1!.key), false, 'the evicted key is verified again (and cached again)');
  t.equal(await cachedNow(a, k1!.key), true);

  a.evictSubject('wes');
  for (const k of [k1!, k2!, k3!]) t.equal(await cachedNow(a, k.key), false, 'every key of the subject was dropped');
  t.equal(await cachedNow(a, other.key), true, 'another subject stays cached');

  // Down to one key of the subject, then two again: the index follows.
  a.evict(`key:${k2!.id}`);
  a.evict(`key:${k3!.id}`);
  t.equal(await cachedNow(a, k1!.key), true, 'the last cached key of the subject stays');
  a.evictSubject('wes');
  t.equal(await cachedNow(a, k1!.key), false, 'and is dropped with its subject');
  t.equal(await cachedNow(a, k2!.key), false, 'cached again');
  a.evictSubject('wes');
  t.equal(await cachedNow(a, k1!.key), false, 'both dropped');
  t.equal(await cachedNow(a, k2!.key), false, 'both dropped');
  a.evict(`key:${other.id}`);
  a.evict(`key:${other.id}`);
  t.equal(await cachedNow(a, other.key), false, 'evicting twice is harmless');
});

t.test('imported keys are evicted by their legacy revocation id, exactly', async (t) => {
  const a = new ApiKeyAuthenticator(store, apiKeysConfig(), (r) => ROLES.indexOf(r), clock, { verifier });
  t.teardown(() => a.close());
  const keys = ['Imported-Key-0001', 'Imported-Key-0002'];
  await svc.importKeys(keys.map((key) => JSON.stringify({ key, subject: 'yul', role: 'basic' })).join('\n'), 'in.jsonl');
  const sha = keys.map((k) => createHash('sha256').update(k).digest('hex'));
  for (const k of keys) t.equal(await cachedNow(a, k), false);
  const id = a.authenticate({ kind: 'apiKey', value: keys[0]!, source: 'authorization' }, { clientIp: '10.0.0.1' }) as Identity;
  t.equal(id.revocationId, `legacy:${sha[0]}`);

  a.evict(`legacy:${sha[0]!.toUpperCase()}`);
  a.evict(`key:${sha[0]}`);
  a.evict(`legacy:${sha[0]}x`);
  t.equal(await cachedNow(a, keys[0]!), true, 'only the exact revocation id evicts');
  a.evict(`legacy:${sha[0]}`);
  t.equal(await cachedNow(a, keys[1]!), true, 'the other imported key of the subject stays');
  t.equal(await cachedNow(a, keys[0]!), false, 'the evicted one is verified again');
  a.evict(`legacy:${createHash('sha256').update('never-cached').digest('hex')}`);
  a.evictSubject('yul');
  for (const k of keys) t.equal(await cachedNow(a, k), false, 'the subject eviction drops imported keys too');
});

t.test('identities of keys alike share their role, scope and audience values', async (t) => {
  const a = new ApiKeyAuthenticator(store, apiKeysConfig(), (r) => ROLES.indexOf(r), clock, { verifier });
  t.teardown(() => a.close());
  const same = await Promise.all([1, 2].map((i) => svc.create({ subject: `zed-${i}`, role: 'admin', scopes: ['read', 'write'] })));
  const other = await svc.create({ subject: 'zed-3', role: 'admin', scopes: ['read'], audiences: ['api'] });
  const other2 = await svc.create({ subject: 'zed-4', role: 'basic', scopes: ['read'], audiences: ['api'] });
  const [i1, i2, i3, i4] = await Promise.all([...same, other, other2].map((k) => a.authenticate({ kind: 'apiKey', value: k.key, source: 'authorization' }, { clientIp: '10.0.0.1' })));
  t.equal(i1!.scopes, i2!.scopes, 'one scope array');
  t.same(i1!.scopes, ['read', 'write']);
  t.ok(Object.isFrozen(i1!.scopes));
  t.equal(i1!.scopesHeader, 'read write');
  t.equal(i1!.audiences, i2!.audiences, 'one empty audience list');
  t.same(i1!.audiences, []);
  t.ok(Object.isFrozen(i1!.audiences));
  t.same([i3!.scopes, i3!.scopesHeader, i3!.audiences], [['read'], 'read', ['api']], 'other values: their own');
  t.equal(i3!.audiences, i4!.audiences, 'equal audience lists are shared');
  t.ok(Object.isFrozen(i3!.audiences));
  t.same([i1!.role, i1!.roleRank, i4!.role, i4!.roleRank], ['admin', 1, 'basic', 0]);
  t.same([i1!.keyId, i2!.keyId], [same[0]!.id, same[1]!.id], 'each identity its own key id');
});

t.test('failure counters: bounded by limiterMax, least recently used first', async (t) => {
  const a = new ApiKeyAuthenticator(store, apiKeysConfig({ failedAttempts: { max: 1, window: 60_000, delay: 0 } }), (r) => ROLES.indexOf(r), clock, { verifier, limiterMax: 2 });
  t.teardown(() => a.close());
  const from = async (ip: string, n: number): Promise<string | undefined> => {
    try {
      await a.authenticate({ kind: 'apiKey', value: `unknown-imported-key-${ip}-${n}`, source: 'authorization' }, { clientIp: ip });
      return undefined;
    } catch (err) {
      if (err instanceof GatewayError) return err.code;
      throw err;
    }
  };
  t.equal(await from('192.0.2.1', 1), 'key-invalid');
  t.equal(await from('192.0.2.1', 2), 'rate-limited', 'one failure is the limit');
  t.equal(await from('192.0.2.2', 1), 'key-invalid');
  t.equal(await from('192.0.2.1', 3), 'rate-limited', 'checking the first client makes it the most recently used');
  t.equal(await from('192.0.2.3', 1), 'key-invalid', 'a third client: the least recently used counter (192.0.2.2) goes');
  t.equal(await from('192.0.2.1', 4), 'rate-limited', 'the first client is still counted');
  t.equal(await from('192.0.2.2', 2), 'key-invalid', 'the dropped one starts over');
});

t.test('negative cache and proven hashes expire after their time, not before', async (t) => {
  const a = new ApiKeyAuthenticator(store, apiKeysConfig({ negativeCacheTtl: 1000, cache: { max: 100, ttl: 1000 } }), (r) => ROLES.indexOf(r), clock, { verifier, provenTtl: 5000 });
  t.teardown(() => a.close());
  t.equal(await code(a, 'unknown-imported-key-n1'), 'key-invalid');
  const lookups = a.stats.storeLookups;
  clock.advance(1000);
  t.equal(await code(a, 'unknown-imported-key-n1'), 'key-invalid');
  t.equal(a.stats.storeLookups, lookups, 'still refused from the negative cache at exactly its ttl');
  clock.advance(1);
  t.equal(await code(a, 'unknown-imported-key-n1'), 'key-invalid');
  t.equal(a.stats.storeLookups, lookups + 1, 'then looked up again');

  const k = await svc.create({ subject: 'ava', role: 'basic' });
  const runs = verifier.calls;
  t.equal(await code(a, k.key), undefined);
  t.equal(verifier.calls, runs + 1, 'verified with argon2');
  clock.advance(2500);
  t.equal(await code(a, k.key), undefined);
  clock.advance(2500);
  t.equal(await code(a, k.key), undefined);
  t.equal(verifier.calls, runs + 1, 'cache expired twice: proven, no argon2 up to provenTtl');
  t.equal(a.stats.provenReuses, 2);
  t.equal(await code(a, k.key), undefined, 'cached again');
  clock.advance(1001);
  t.equal(await code(a, k.key), undefined);
  t.equal(verifier.calls, runs + 2, 'cache expired past provenTtl: argon2 again');
});

t.test('a subject eviction also drops entries past their time, so a clock stepped back cannot serve them', async (t) => {
  const a = new ApiKeyAuthenticator(store, apiKeysConfig({ cache: { max: 100, ttl: 60_000 } }), (r) => ROLES.indexOf(r), clock, { verifier });
  t.teardown(() => a.close());
  const k = await svc.create({ subject: 'yara', role: 'basic' });
  t.equal(await cachedNow(a, k.key), false, 'verified');
  t.equal(await cachedNow(a, k.key), true, 'cached');
  clock.advance(60_001);
  a.evictSubject('yara');
  clock.advance(-60_001);
  t.equal(await cachedNow(a, k.key), false, 'not served from the cache once the clock is back');
});
