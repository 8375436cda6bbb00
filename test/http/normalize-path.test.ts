import t from 'tap';
import { normalizeTarget } from '../../src/http/normalize-path.js';

type Want = { path: string; query?: string } | { reject: RegExp };
type Case = [name: string, target: string, want: Want, allowPathParams?: boolean];

const NOT_ORIGIN = /must be a path/;
const FRAGMENT = /fragment/;
const CONTROL = /^control characters/;
const ENC_CONTROL = /encoded control/;
const SPACE = /raw spaces/;
const BACKSLASH = /backslashes/;
const NON_ASCII = /non-ASCII/;
const BAD_PCT = /invalid percent-encoding/;
const ENC_SLASH = /encoded "\/"/;
const BAD_UTF8 = /not valid UTF-8/;
const PARAMS = /path parameters/;
const DOT_PARAMS = /dot segment with path parameters/;
const ABOVE_ROOT = /above the root/;

const cases: Case[] = [
  // Ordinary targets (fast path)
  ['root', '/', { path: '/' }],
  ['plain path', '/a/b', { path: '/a/b' }],
  ['trailing slash kept', '/a/b/', { path: '/a/b/' }],
  ['query split off untouched', '/films/123/reviews?x=1&y=%2e%2e', { path: '/films/123/reviews', query: '?x=1&y=%2e%2e' }],
  ['empty query kept', '/a?', { path: '/a', query: '?' }],
  ['sub-delims, colon and at kept raw', "/a:b@c!$&'()*+,=", { path: "/a:b@c!$&'()*+,=" }],
  ['dots inside names kept', '/.well-known/jwks.json', { path: '/.well-known/jwks.json' }],
  ['three dots is not a dot segment', '/a/.../b', { path: '/a/.../b' }],
  ['four dots is not a dot segment', '/a/..../b', { path: '/a/..../b' }],
  ['dot-prefixed name', '/a/..b/.c', { path: '/a/..b/.c' }],

  // Dot segments, literal
  ['single dot removed', '/a/./b', { path: '/a/b' }],
  ['double dot climbs', '/a/../b', { path: '/b' }],
  ['two climbs', '/a/b/../../c', { path: '/c' }],
  ['final dot keeps slash', '/a/.', { path: '/a/' }],
  ['final double dot to root', '/a/..', { path: '/' }],
  ['final double dot keeps slash', '/a/b/..', { path: '/a/' }],
  ['leading dot', '/./a', { path: '/a' }],
  ['public/../admin', '/public/../admin', { path: '/admin' }],
  ['.. at root', '/..', { reject: ABOVE_ROOT }],
  ['.. then path', '/../admin', { reject: ABOVE_ROOT }],
  ['climb past root later', '/a/../../admin', { reject: ABOVE_ROOT }],
  ['dot then .. at root', '/./../x', { reject: ABOVE_ROOT }],
  ['.. above root after trailing', '/a/b/../../../', { reject: ABOVE_ROOT }],

  // Dot segments, encoded in every case and mix
  ['%2e%2e above root', '/%2e%2e/admin', { reject: ABOVE_ROOT }],
  ['%2E%2E above root', '/%2E%2E/admin', { reject: ABOVE_ROOT }],
  ['.%2e above root', '/.%2e/admin', { reject: ABOVE_ROOT }],
  ['%2e. above root', '/%2e./admin', { reject: ABOVE_ROOT }],
  ['%2e%2e resolves', '/a/%2e%2e/b', { path: '/b' }],
  ['%2E%2E resolves', '/a/%2E%2E/b', { path: '/b' }],
  ['.%2e resolves', '/a/.%2e/b', { path: '/b' }],
  ['%2e. resolves', '/a/%2e./b', { path: '/b' }],
  ['.%2E resolves', '/a/.%2E/b', { path: '/b' }],
  ['%2E. resolves', '/a/%2E./b', { path: '/b' }],
  ['%2e single dot', '/a/%2e/b', { path: '/a/b' }],
  ['%2E final', '/a/%2E', { path: '/a/' }],
  ['public/%2e%2e/admin', '/public/%2e%2e/admin', { path: '/admin' }],
  ['%2e%2e with trailing query', '/a/%2e%2e?x', { path: '/', query: '?x' }],
  ['encoded dots in a name stay a name', '/a/%2e%2e%2e', { path: '/a/...' }],
  ['..%2f traversal', '/a/..%2f..%2fadmin', { reject: ENC_SLASH }],
  ['%2e%2e%2f traversal', '/a/%2e%2e%2fadmin', { reject: ENC_SLASH }],
  ['double-encoded dots stay encoded', '/a/%252e%252e/admin', { path: '/a/%252e%252e/admin' }],
  ['double-encoded dots alone', '/%252e%252e', { path: '/%252e%252e' }],
  ['decoded once only', '/a/%25%32%65', { path: '/a/%252e' }],
  ['double-encoded slash stays', '/a%252fb', { path: '/a%252fb' }],
  ['dot-dot-NUL', '/a/..%00/b', { reject: ENC_CONTROL }],
  ['dot NUL', '/a/%2e%00/', { reject: ENC_CONTROL }],

  // Slashes
  ['leading double slash merged', '//admin', { path: '/admin' }],
  ['inner double slash merged', '/a//b', { path: '/a/b' }],
  ['many slashes merged, trailing kept', '///a///b///', { path: '/a/b/' }],
  ['network-path lookalike merged', '//evil.example/x', { path: '/evil.example/x' }],
  ['slashes merge before .. resolves (as nginx, unlike bare RFC 3986)', '/a//../b', { path: '/b' }],
  ['%2f', '/a%2fb', { reject: ENC_SLASH }],
  ['%2F', '/a%2Fb', { reject: ENC_SLASH }],
  ['%5c', '/a%5cb', { reject: ENC_SLASH }],
  ['%5C', '/a%5Cb', { reject: ENC_SLASH }],
  ['leading %2F', '/%2F/admin', { reject: ENC_SLASH }],
  ['raw backslash', '/a\\b', { reject: BACKSLASH }],
  ['backslash network path', '/\\evil.example', { reject: BACKSLASH }],
  ['backslash traversal', '/..\\admin', { reject: BACKSLASH }],
  ['double-encoded backslash stays', '/a%255cb', { path: '/a%255cb' }],

  // Control characters, raw and encoded
  ['raw NUL', '/a\u0000b', { reject: CONTROL }],
  ['%00', '/a%00b', { reject: ENC_CONTROL }],
  ['encoded CRLF', '/a%0d%0aSet-Cookie:x', { reject: ENC_CONTROL }],
  ['raw CRLF', '/a\r\nb', { reject: CONTROL }],
  ['raw tab', '/a\tb', { reject: CONTROL }],
  ['%09', '/a%09b', { reject: ENC_CONTROL }],
  ['%1F', '/a%1Fb', { reject: ENC_CONTROL }],
  ['%7f', '/a%7fb', { reject: ENC_CONTROL }],
  ['raw DEL', '/a\u007fb', { reject: CONTROL }],
  ['C1 NEL %C2%85', '/a%c2%85b', { reject: ENC_CONTROL }],
  ['C1 %C2%80', '/%C2%80', { reject: ENC_CONTROL }],
  ['raw space', '/a b', { reject: SPACE }],
  ['%20 kept', '/a%20b', { path: '/a%20b' }],
  ['control in query', '/a?b\u0000', { reject: CONTROL }],
  ['space in query', '/a?b c', { reject: SPACE }],

  // Fragments
  ['fragment', '/a#b', { reject: FRAGMENT }],
  ['empty fragment', '/a#', { reject: FRAGMENT }],
  ['fragment hiding traversal', '/#/../admin', { reject: FRAGMENT }],
  ['fragment in query', '/a?x#y', { reject: FRAGMENT }],
  ['%23 kept encoded', '/a%23b', { path: '/a%23b' }],

  // Not origin-form
  ['absolute-form http', 'http://evil/admin', { reject: NOT_ORIGIN }],
  ['absolute-form https', 'https://x/', { reject: NOT_ORIGIN }],
  ['authority-form', 'example.com:443', { reject: NOT_ORIGIN }],
  ['asterisk-form', '*', { reject: NOT_ORIGIN }],
  ['empty target', '', { reject: NOT_ORIGIN }],
  ['relative path', 'admin', { reject: NOT_ORIGIN }],
  ['leading backslash', '\\\\evil\\x', { reject: NOT_ORIGIN }],
  ['leading %2F', '%2fadmin', { reject: NOT_ORIGIN }],
  ['leading space', ' /admin', { reject: NOT_ORIGIN }],
  ['query-only', '?a=1', { reject: NOT_ORIGIN }],

  // Path parameters
  ['semicolon refused', '/a;b', { reject: PARAMS }],
  ['jsessionid refused', '/a;jsessionid=1/b', { reject: PARAMS }],
  ['..; bypass refused', '/public/..;/admin', { reject: PARAMS }],
  ['%3b refused', '/a%3bb', { reject: PARAMS }],
  ['%3B refused', '/a%3Bb', { reject: PARAMS }],
  ['params allowed: kept', '/a;b=1/c', { path: '/a;b=1/c' }, true],
  ['params allowed: ..; refused', '/public/..;/admin', { reject: DOT_PARAMS }, true],
  ['params allowed: .;x refused', '/public/.;x/admin', { reject: DOT_PARAMS }, true],
  ['params allowed: %2e%2e; refused', '/public/%2e%2e;/admin', { reject: DOT_PARAMS }, true],
  ['params allowed: ..%3B refused', '/a/..%3B/b', { reject: DOT_PARAMS }, true],
  ['params allowed: %3b kept upper-cased', '/a/%3bx', { path: '/a/%3Bx' }, true],
  ['params allowed: ;-only segment', '/a/;x/../b', { path: '/a/b' }, true],

  // Invalid percent-encoding
  ['lone %', '/a%', { reject: BAD_PCT }],
  ['%G1', '/a%G1', { reject: BAD_PCT }],
  ['%1 at end', '/a%1', { reject: BAD_PCT }],
  ['%1 before query', '/a%1?x', { reject: BAD_PCT }],
  ['%%41', '/a%%41', { reject: BAD_PCT }],
  ['%zz', '/%zz', { reject: BAD_PCT }],
  ['invalid % in query passes through', '/a?x=%zz', { path: '/a', query: '?x=%zz' }],

  // Unreserved decoding and hex case
  ['%7e decoded', '/%7e', { path: '/~' }],
  ['%7E decoded', '/%7Euser', { path: '/~user' }],
  ['%3a decoded like the other path-legal delimiters', '/%3a', { path: '/:' }],
  ['encoded sub-delims decoded', '/a%40b%21%24%26%27%28%29%2A%2B%2C%3D', { path: "/a@b!$&'()*+,=" }],
  ['encoded ? stays encoded', '/a%3fb', { path: '/a%3Fb' }],
  ['%61dmin decoded to admin', '/%61dmin', { path: '/admin' }],
  ['all-encoded ADMIN', '/%41%44%4d%49%4e', { path: '/ADMIN' }],
  ['encoded - _ .', '/x%2d%5f%2e', { path: '/x-_.' }],
  ['%2a decoded (sub-delimiter)', '/a%2a', { path: '/a*' }],
  ['%25 stays', '/a%25', { path: '/a%25' }],
  ['%3f stays in the path', '/a%3f?b', { path: '/a%3F', query: '?b' }],

  // ASCII not allowed raw: encoded
  ['braces', '/a{b}', { path: '/a%7Bb%7D' }],
  ['pipe', '/a|b', { path: '/a%7Cb' }],
  ['caret', '/a^b', { path: '/a%5Eb' }],
  ['double quote', '/a"b', { path: '/a%22b' }],
  ['angle brackets', '/<script>', { path: '/%3Cscript%3E' }],
  ['square brackets', '/a[1]', { path: '/a%5B1%5D' }],
  ['backtick', '/a`b', { path: '/a%60b' }],
  ['raw and encoded brace agree', '/a%7bb%7d', { path: '/a%7Bb%7D' }],

  // UTF-8, overlongs, unicode
  ['encoded é kept', '/%C3%A9', { path: '/%C3%A9' }],
  ['encoded é upper-cased', '/caf%c3%a9', { path: '/caf%C3%A9' }],
  ['4-byte emoji', '/%F0%9F%98%80', { path: '/%F0%9F%98%80' }],
  ['CJK', '/%E6%97%A5%E6%9C%AC', { path: '/%E6%97%A5%E6%9C%AC' }],
  ['overlong dot-dot', '/%C0%AE%C0%AE/admin', { reject: BAD_UTF8 }],
  ['overlong slash', '/%C0%AF', { reject: BAD_UTF8 }],
  ['overlong backslash', '/%C1%9C', { reject: BAD_UTF8 }],
  ['3-byte overlong dot', '/%E0%80%AE', { reject: BAD_UTF8 }],
  ['4-byte overlong dot', '/%F0%80%80%AE', { reject: BAD_UTF8 }],
  ['lone continuation byte', '/%80', { reject: BAD_UTF8 }],
  ['truncated at end', '/%C3', { reject: BAD_UTF8 }],
  ['truncated before slash', '/%C3/', { reject: BAD_UTF8 }],
  ['truncated before raw char', '/%C3a', { reject: BAD_UTF8 }],
  ['truncated 3-byte', '/%E2%82', { reject: BAD_UTF8 }],
  ['surrogate', '/%ED%A0%80', { reject: BAD_UTF8 }],
  ['above U+10FFFF', '/%F4%90%80%80', { reject: BAD_UTF8 }],
  ['F5 lead', '/%F5%80%80%80', { reject: BAD_UTF8 }],
  ['FF byte', '/%FF', { reject: BAD_UTF8 }],
  ['extra continuation', '/%C3%A9%A9', { reject: BAD_UTF8 }],
  ['raw latin1 é', '/caf\u00e9', { reject: NON_ASCII }],
  ['raw UTF-8 bytes as latin1', '/caf\u00c3\u00a9', { reject: NON_ASCII }],
  ['raw unicode', '/\u65e5\u672c', { reject: NON_ASCII }],
  ['raw fullwidth dots', '/\uff0e\uff0e/admin', { reject: NON_ASCII }],
  ['raw non-ASCII in query', '/a?q=\u00e9', { reject: NON_ASCII }],
];

t.ok(cases.length >= 70, `${cases.length} cases`);

for (const [name, target, want, allowPathParams = false] of cases) {
  t.test(name, async (t) => {
    const got = normalizeTarget(target, { allowPathParams });
    if ('reject' in want) {
      t.equal(got.ok, false, `${JSON.stringify(target)} is refused`);
      if (!got.ok) t.match(got.reason, want.reject, 'for the right reason');
      return;
    }
    t.same(got, { ok: true, path: want.path, query: want.query ?? '' }, JSON.stringify(target));
    if (got.ok) {
      // Fixed point: normalizing the output again changes nothing.
      t.same(normalizeTarget(got.path, { allowPathParams }), { ok: true, path: got.path, query: '' }, 'fixed point');
      t.equal(new URL(got.path, 'http://x').pathname, got.path, 'unchanged by WHATWG URL parsing');
    }
  });
}

t.test('fast path returns the target itself when nothing changes', async (t) => {
  const target = '/api/v1/films/42';
  const got = normalizeTarget(target, { allowPathParams: false });
  t.ok(got.ok && got.path === target && got.query === '');
});
