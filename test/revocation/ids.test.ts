import t from 'tap';
import {
  formatRevocationId,
  formatScopedSubject,
  fromTokenRecordId,
  isTokenRevocationId,
  keyRevocationId,
  parseRevocationId,
  parseScopedSubject,
  type RevocationId,
  tokenRecordId,
} from '../../src/revocation/ids.js';

const HEX = 'ab'.repeat(32);

t.test('every kind formats to its text and parses back', async (t) => {
  const cases: Array<[RevocationId, string]> = [
    [{ kind: 'key', keyId: 'k_01' }, 'key:k_01'],
    [{ kind: 'legacy', sha256: HEX }, `legacy:${HEX}`],
    [{ kind: 'jti', jti: 'j-1' }, 'jti:j-1'],
    [{ kind: 'jti', jti: 'a:b:c' }, 'jti:a:b:c'],
    [{ kind: 'token', sha256: HEX }, `tok:${HEX}`],
  ];
  for (const [id, text] of cases) {
    t.equal(formatRevocationId(id), text, `${id.kind} formats`);
    t.same(parseRevocationId(text), id, `${text} parses`);
    t.same(parseRevocationId(formatRevocationId(id)), id, `${id.kind} round-trips`);
  }
});

t.test('malformed ids are rejected', async (t) => {
  const bad = [
    '',
    'key',
    'key:',
    ':x',
    'jti:',
    'nope:x',
    'KEY:k_01',
    `legacy:${HEX.toUpperCase()}`,
    `legacy:${HEX}x`,
    `legacy:${HEX.slice(1)}`,
    'tok:plain',
    `tok:${HEX.slice(2)}`,
    `sha256:${HEX}`,
    `k:${HEX}`,
  ];
  for (const text of bad) t.equal(parseRevocationId(text), undefined, JSON.stringify(text));
});

t.test('JWT ids are told from key ids', async (t) => {
  const cases: Array<[string, boolean]> = [
    ['jti:j', true],
    [`tok:${HEX}`, true],
    ['key:k', false],
    [`legacy:${HEX}`, false],
    ['t:bob', false],
  ];
  for (const [text, expected] of cases) t.equal(isTokenRevocationId(text), expected, text);
});

t.test('a stored key names itself by id when native, by digest when imported', async (t) => {
  t.equal(keyRevocationId({ id: 'k_1', sha256: null }), 'key:k_1');
  t.equal(keyRevocationId({ id: 'k_1', sha256: HEX }), `legacy:${HEX}`);
});

t.test('JWT revocations round-trip through their stored form', async (t) => {
  const cases: Array<[RevocationId & { kind: 'jti' | 'token' }, string]> = [
    [{ kind: 'jti', jti: 'j-1' }, 'j-1'],
    [{ kind: 'token', sha256: HEX }, `sha256:${HEX}`],
  ];
  for (const [id, stored] of cases) {
    t.equal(tokenRecordId(id), stored, `${id.kind} stored`);
    t.same(fromTokenRecordId(stored), id, `${stored} read back`);
  }
  t.same(fromTokenRecordId('sha256:not-hex'), { kind: 'jti', jti: 'sha256:not-hex' }, 'a non-digest reads as a jti');
});

t.test('scoped subjects', async (t) => {
  const cases: Array<['keys' | 'tokens', string, string]> = [
    ['keys', 'alice', 'k:alice'],
    ['tokens', 'alice', 't:alice'],
    ['tokens', 'a:b', 't:a:b'],
    ['keys', '', 'k:'],
  ];
  for (const [scope, subject, text] of cases) {
    t.equal(formatScopedSubject(scope, subject), text);
    t.same(parseScopedSubject(text), { scope, subject });
  }
  for (const text of ['', 'alice', 'x:alice', 'K:alice']) t.equal(parseScopedSubject(text), undefined, JSON.stringify(text));
});
