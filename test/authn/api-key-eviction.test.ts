import t from 'tap';
import { ApiKeyAuthenticator } from '../../src/authn/api-key.js';
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

const store = await openStore('pglite://memory', { migrate: true });
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
