import t from 'tap';
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { DEFAULT_HASH_PARAMS, hashSecret, uuidBytesSha256, verifySecret } from '../../src/keys/hash.js';

function phcParams(phc: string): Record<string, string> {
  return Object.fromEntries(phc.split('$')[3]!.split(',').map((kv) => kv.split('=') as [string, string]));
}

t.test('argon2id with the configured parameters', async (t) => {
  const h = await hashSecret('s3cret');
  t.same(phcParams(h), { m: '19456', t: '2', p: '1' }, 'default: OWASP minimum');
  t.match(h, /^\$argon2id\$v=19\$/, 'argon2id');
  t.same(DEFAULT_HASH_PARAMS, { memoryCost: 19_456, timeCost: 2, parallelism: 1 });
  t.equal(await verifySecret(h, 's3cret'), true);
  t.equal(await verifySecret(h, 's3creT'), false);
  t.equal(await verifySecret(h, ''), false);
  const custom = await hashSecret('x', { memoryCost: 32_768, timeCost: 3, parallelism: 2 });
  t.same(phcParams(custom), { m: '32768', t: '3', p: '2' });
  t.not(await hashSecret('s3cret'), h, 'salted: two hashes of one secret differ');
});

t.test('a malformed stored hash verifies false, never throws', async (t) => {
  for (const bad of ['', 'plain', '$argon2id$v=19$m=19456', '$2b$10$abcdefghijklmnopqrstuv']) {
    t.equal(await verifySecret(bad, 'x'), false, JSON.stringify(bad));
  }
});

t.test('uuidBytesSha256: the digest of the 16 bytes a UUID spells, in any letter case', async (t) => {
  const spell = (bytes: Uint8Array, upper: boolean[]) => {
    const hex = [...Buffer.from(bytes).toString('hex')].map((c, i) => (upper[i] ? c.toUpperCase() : c)).join('');
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  };
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.array(fc.boolean(), { minLength: 32, maxLength: 32 }), (bytes, upper) => {
      return uuidBytesSha256(spell(bytes, upper)) === createHash('sha256').update(bytes).digest('hex');
    }),
  );
  // Anything that is not exactly the 36-character hyphenated form is not a UUID key.
  fc.assert(
    fc.property(fc.string({ maxLength: 40 }), (s) => {
      fc.pre(!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(s));
      return uuidBytesSha256(s) === undefined;
    }),
  );
  const u = '9b2f6c1e-4d7a-4f3b-a1c2-0e5d8f7a6b90';
  for (const s of [u.replaceAll('-', ''), `{${u}}`, `urn:uuid:${u}`, ` ${u}`, `${u}\n`, u.slice(0, 35) + 'g']) t.equal(uuidBytesSha256(s), undefined, JSON.stringify(s));
});
