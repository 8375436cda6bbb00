import t from 'tap';
import {
  BASE62, CHECKSUM_LENGTH, ID_LENGTH, SECRET_LENGTH,
  formatKey, generateKey, generateKeyId, generateRefreshToken, looksNative, parseKey, parseRefreshToken, randomBase62,
} from '../../src/keys/format.js';

t.test('generated keys parse back and carry enough entropy', async (t) => {
  const k = generateKey('pcl');
  t.match(k.key, new RegExp(`^pcl_[0-9A-Za-z]{${ID_LENGTH}}_[0-9A-Za-z]{${SECRET_LENGTH + CHECKSUM_LENGTH}}$`));
  t.same(parseKey(k.key, 'pcl'), { id: k.id, secret: k.secret });
  t.ok(ID_LENGTH * Math.log2(62) >= 64, `id has ≥ 64 bits (${(ID_LENGTH * Math.log2(62)).toFixed(1)})`);
  t.ok(SECRET_LENGTH * Math.log2(62) >= 256, `secret has ≥ 256 bits (${(SECRET_LENGTH * Math.log2(62)).toFixed(1)})`);
  t.equal(formatKey('pcl', k.id, k.secret), k.key, 'formatKey rebuilds the same key');
  const ids = new Set(Array.from({ length: 2000 }, () => generateKeyId()));
  t.equal(ids.size, 2000, 'ids do not repeat');
});

t.test('base62 output is unbiased enough', async (t) => {
  const s = randomBase62(62 * 2000);
  const counts = new Map<string, number>();
  for (const c of s) counts.set(c, (counts.get(c) ?? 0) + 1);
  t.equal(counts.size, 62, 'every symbol occurs');
  for (const c of BASE62) {
    const n = counts.get(c) ?? 0;
    if (n < 1600 || n > 2400) t.fail(`symbol ${c} occurs ${n} times (expected ~2000)`);
  }
  t.pass('each symbol within ±20% of uniform');
});

t.test('a single changed, dropped or added character is rejected', async (t) => {
  const { key } = generateKey('pcl');
  let accepted = 0;
  for (let i = 0; i < key.length; i++) {
    for (const c of ['0', 'a', 'Z', 'x']) {
      if (key[i] === c) continue;
      const typo = key.slice(0, i) + c + key.slice(i + 1);
      if (parseKey(typo, 'pcl') !== null) accepted++;
    }
  }
  t.equal(accepted, 0, 'no substituted character passes the checksum');
  t.equal(parseKey(key.slice(0, -1), 'pcl'), null, 'truncated');
  t.equal(parseKey(key + 'a', 'pcl'), null, 'extended');
  t.equal(parseKey(key.slice(0, 10) + key.slice(11), 'pcl'), null, 'dropped character');
});

t.test('parseKey table', async (t) => {
  const { key, id, secret } = generateKey('acme');
  const cases: Array<[string, string, boolean]> = [
    [key, 'acme', true],
    [key, 'pcl', false],
    [key, 'acm', false],
    [key.toUpperCase(), 'acme', false],
    [` ${key}`, 'acme', false],
    [`${key}\n`, 'acme', false],
    ['', 'acme', false],
    ['acme_', 'acme', false],
    [`acme_${id}_${secret}`, 'acme', false],
    [key.replace(`_${id}_`, `-${id}_`), 'acme', false],
    [key.replace(/_/g, '-'), 'acme', false],
  ];
  for (const [value, prefix, ok] of cases) {
    t.equal(parseKey(value, prefix) !== null, ok, `${JSON.stringify(value.slice(0, 24))}… with prefix ${prefix}`);
  }
});

t.test('looksNative', async (t) => {
  t.equal(looksNative('pcl_anything', 'pcl'), true);
  t.equal(looksNative('pcl_', 'pcl'), true);
  t.equal(looksNative('pcl', 'pcl'), false);
  t.equal(looksNative('pclx_abc', 'pcl'), false);
  t.equal(looksNative('legacy-key-123', 'pcl'), false);
});

t.test('refresh tokens are distinct from keys', async (t) => {
  const k = generateKey('pcl');
  const rt = generateRefreshToken('pcl', k.id);
  t.match(rt.key, /^pcl_rt_/);
  t.same(parseRefreshToken(rt.key, 'pcl'), { id: k.id, secret: rt.secret });
  t.equal(parseKey(rt.key, 'pcl'), null, 'a refresh token is not a key');
  t.equal(parseRefreshToken(k.key, 'pcl'), null, 'a key is not a refresh token');
  t.equal(parseRefreshToken(rt.key.slice(0, -1) + (rt.key.endsWith('a') ? 'b' : 'a'), 'pcl'), null, 'checksum');
});
