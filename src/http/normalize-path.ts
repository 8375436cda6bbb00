/**
 * Request-target normalization (docs/reference/request-pipeline.md, step 1).
 *
 * The path this produces is both the one routes are matched against and the one sent
 * upstream, so the gateway and the upstream can never disagree about which resource was
 * asked for. Anything whose meaning depends on who parses it is refused rather than guessed.
 *
 * Rules, in the order a reader would look for them:
 * - The target must be origin-form (`/…`). Absolute-form (`http://h/p`) would carry an
 *   authority that competes with `Host`; authority-form and `*` mean nothing to a reverse proxy.
 * - `#` anywhere is refused: a fragment never belongs on the wire, and servers disagree on
 *   whether it ends the path.
 * - Raw control characters, raw space, raw `\` and raw bytes above 0x7E are refused, in the
 *   path and in the query alike. Node hands undecoded bytes as latin1 characters; guessing
 *   their encoding is exactly the kind of disagreement this function exists to prevent.
 * - Percent-encodings: must be `%` plus two hex digits. `%2F` and `%5C` (a slash hidden from
 *   us but not from an upstream that decodes before routing), `%00`–`%1F`, `%7F` and the C1
 *   controls (`%C2%80`–`%C2%9F`) are refused. Encoded bytes ≥ 0x80 must form well-formed
 *   UTF-8 (RFC 3629: no overlongs such as `%C0%AE`, no surrogates, nothing above U+10FFFF,
 *   no lone or missing continuation bytes) and stay encoded. Encoded unreserved characters
 *   (ALPHA DIGIT `-` `.` `_` `~`) are decoded, since RFC 3986 §6.2.2.2 makes them equivalent
 *   to their literals; every other encoding is kept, with its hex upper-cased. Decoding
 *   happens once: `%252e` stays `%252e`.
 * - ASCII characters that RFC 3986 never allows raw in a path (`"` `<` `>` `[` `]` `^` `` ` ``
 *   `{` `|` `}`) are percent-encoded rather than refused: browsers send some of them raw and
 *   every server decodes them to the same character, so the encoded form is the canonical one.
 *   It also keeps the output a fixed point of WHATWG URL parsing, which encodes most of them.
 * - `;` (raw or `%3B`) is refused unless `allowPathParams`, because servers that strip
 *   matrix parameters (Tomcat, Jetty) and servers that do not see different paths. With
 *   `allowPathParams`, a segment that is a dot segment once its parameters are stripped
 *   (`..;x`, `.;`) is still refused: Tomcat would climb with it, others would not.
 * - Repeated slashes are merged, leading ones included: `//host/p` becomes `/host/p`. A path
 *   starting with `//` reads as a network-path reference to any upstream that resolves the
 *   target as a URL (`new URL(req.url, base)` takes `host` as the authority), and most
 *   servers merge slashes before routing anyway. Merging comes first, as in nginx: `/a//../b`
 *   is `/b` (a bare RFC 3986 resolver, which keeps the empty segment, would give `/a/b`).
 * - Dot segments (after decoding, so `%2e`, `.%2E` and friends count) are resolved as in
 *   RFC 3986 §5.2.4, except that `..` above the root is refused rather than clamped: a client
 *   that climbs above the root is probing, and clamping would hide it.
 * - A trailing slash is kept (`/a/` stays `/a/`; `/a/.` and `/a/b/..` give `/a/` as in RFC 3986),
 *   because upstreams may serve `/a` and `/a/` differently; routes decide whether they match both.
 * - The query (from the first `?`) is passed through untouched: it is the upstream's to
 *   interpret. Only raw control characters, spaces, `#` and raw bytes above 0x7E are refused there.
 *
 * The output is a fixed point (normalizing it again returns it unchanged) and is unchanged
 * by WHATWG URL path parsing.
 */

/** Outcome of {@link normalizeTarget}; `reason` is a short, client-safe explanation. */
export type NormalizeResult = { ok: true; path: string; query: string } | { ok: false; reason: string };

export interface NormalizeOptions {
  /** Accept `;` path parameters (raw or `%3B`) instead of refusing them. */
  allowPathParams: boolean;
}

// Character classes of the raw target, indexed by char code < 128.
const K_CTL = 0;
const K_PLAIN = 1; // allowed raw and kept as is: unreserved minus '.', sub-delims minus ';', ':' and '@'
const K_DOT = 2;
const K_SLASH = 3;
const K_PCT = 4;
const K_SEMI = 5;
const K_ENCODE = 6; // not allowed raw in a path: emitted percent-encoded
const K_BACKSLASH = 7;
const K_HASH = 8;
const K_SPACE = 9;
const K_NON_ASCII = 10;

const CLASS = new Uint8Array(128);
for (let c = 0x21; c < 0x7f; c++) CLASS[c] = K_PLAIN;
CLASS[0x2e] = K_DOT;
CLASS[0x2f] = K_SLASH;
CLASS[0x25] = K_PCT;
CLASS[0x3b] = K_SEMI;
for (const ch of '"<>[]^`{|}') CLASS[ch.charCodeAt(0)] = K_ENCODE;
CLASS[0x5c] = K_BACKSLASH;
CLASS[0x23] = K_HASH;
CLASS[0x20] = K_SPACE;
// '?' never reaches the classifier: the path ends at the first one.

/** 1 where a decoded byte is an unreserved character (RFC 3986 §2.3). */
const UNRESERVED = new Uint8Array(128);
for (let c = 0x30; c <= 0x39; c++) UNRESERVED[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) UNRESERVED[c] = 1;
for (let c = 0x61; c <= 0x7a; c++) UNRESERVED[c] = 1;
for (const ch of '-._~') UNRESERVED[ch.charCodeAt(0)] = 1;
// ':' '@' and the sub-delimiters other than ';' are decoded too: they are legal raw in a
// path, and upstreams decode them, so `/items%3Abatch` must be matched as `/items:batch`.
for (const ch of ":@!$&'()*+,=") UNRESERVED[ch.charCodeAt(0)] = 1;

const HEX_DIGITS = '0123456789ABCDEF';
/** Canonical text of a byte in the output: the literal for unreserved ASCII, `%XX` otherwise. */
const BYTE_TEXT: string[] = [];
for (let b = 0; b < 256; b++) {
  BYTE_TEXT.push(b < 128 && UNRESERVED[b] === 1 ? String.fromCharCode(b) : '%' + HEX_DIGITS[b >> 4] + HEX_DIGITS[b & 15]);
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const l = c | 0x20;
  if (l >= 0x61 && l <= 0x66) return l - 0x57;
  return -1;
}

// Reasons are constants: they end up in 400 details, so they must not echo the target.
const R_NOT_ORIGIN = 'the request target must be a path starting with "/"';
const R_FRAGMENT = 'a fragment ("#") is not allowed in the request target';
const R_CONTROL = 'control characters are not allowed in the request target';
const R_ENCODED_CONTROL = 'encoded control characters are not allowed in the request target';
const R_SPACE = 'raw spaces are not allowed in the request target';
const R_BACKSLASH = 'backslashes are not allowed in the request target';
const R_NON_ASCII = 'raw non-ASCII bytes are not allowed in the request target; percent-encode them as UTF-8';
const R_BAD_PCT = 'invalid percent-encoding in the request target';
const R_ENCODED_SLASH = 'encoded "/" or "\\" (%2F, %5C) is not allowed in the path';
const R_BAD_UTF8 = 'percent-encoded bytes in the path are not valid UTF-8';
const R_PARAMS = 'path parameters (";") are not allowed';
const R_DOT_PARAMS = 'a dot segment with path parameters is not allowed';
const R_ABOVE_ROOT = 'the path climbs above the root ("..")';

function reject(reason: string): NormalizeResult {
  return { ok: false, reason };
}

/** Reason for a character class that is not accepted raw in the path, or null. */
function refusal(k: number, allowParams: boolean): string | null {
  switch (k) {
    case K_CTL: return R_CONTROL;
    case K_SPACE: return R_SPACE;
    case K_BACKSLASH: return R_BACKSLASH;
    case K_HASH: return R_FRAGMENT;
    case K_NON_ASCII: return R_NON_ASCII;
    case K_SEMI: return allowParams ? null : R_PARAMS;
    default: return null;
  }
}

function checkQuery(target: string, from: number): string | null {
  for (let i = from; i < target.length; i++) {
    const c = target.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f) return c === 0x20 ? R_SPACE : c < 0x20 || c === 0x7f ? R_CONTROL : R_NON_ASCII;
    if (c === 0x23) return R_FRAGMENT;
  }
  return null;
}

/**
 * Normalizes a raw request-target (`req.url`) into the canonical path that is both matched
 * and forwarded, plus the untouched query (with its leading `?`, or `''`). Never throws:
 * anything ambiguous or malformed gives `{ ok: false, reason }`, a 400 `bad-request`.
 */
export function normalizeTarget(target: string, opts: NormalizeOptions): NormalizeResult {
  const len = target.length;
  if (len === 0 || target.charCodeAt(0) !== 0x2f) return reject(R_NOT_ORIGIN);
  let pathEnd = target.indexOf('?');
  if (pathEnd === -1) pathEnd = len;

  let query = '';
  if (pathEnd < len) {
    const bad = checkQuery(target, pathEnd + 1);
    if (bad !== null) return reject(bad);
    query = target.slice(pathEnd);
  }

  // Fast path: only characters kept as they are, no empty segment before the last, no dot
  // segment. Most real traffic is this, and it costs one scan and no allocation but the slice.
  let segStart = 1;
  let i = 1;
  for (; i < pathEnd; i++) {
    const c = target.charCodeAt(i);
    if (c === 0x2f) {
      if (isEmptyOrDotSegment(target, segStart, i)) break;
      segStart = i + 1;
    } else if (c >= 128 || (CLASS[c] !== K_PLAIN && CLASS[c] !== K_DOT)) {
      break;
    }
  }
  if (i === pathEnd && (pathEnd === segStart || !isEmptyOrDotSegment(target, segStart, pathEnd))) {
    return { ok: true, path: pathEnd === len ? target : target.slice(0, pathEnd), query };
  }
  return slowPath(target, pathEnd, query, opts.allowPathParams);
}

function isEmptyOrDotSegment(s: string, from: number, to: number): boolean {
  const n = to - from;
  if (n === 0) return true;
  if (s.charCodeAt(from) !== 0x2e) return false;
  return n === 1 || (n === 2 && s.charCodeAt(from + 1) === 0x2e);
}

function slowPath(target: string, pathEnd: number, query: string, allowParams: boolean): NormalizeResult {
  let out = ''; // the resolved segments so far, each preceded by '/'
  let seg = '';
  let semiAt = -1; // index in seg of the first ';' (raw or %3B), for the dot-segment-with-parameters check
  let trailing = false; // the last segment seen was empty or a dot segment
  let need = 0; // UTF-8 continuation bytes still owed, across consecutive %XX
  let prev = 0; // the last encoded byte, which sets the allowed range of a continuation byte after it (see continuationRefusal)
  let runStart = 1;

  for (let i = 1; i <= pathEnd; i++) {
    const c = i === pathEnd ? 0x2f : target.charCodeAt(i);
    const k = c < 128 ? CLASS[c]! : K_NON_ASCII;
    if (k === K_PLAIN || k === K_DOT) {
      if (need !== 0) return reject(R_BAD_UTF8);
      continue;
    }
    if (i > runStart) seg += target.slice(runStart, i);
    runStart = i + 1;

    if (k === K_PCT) {
      const b = escapedByte(target, i, pathEnd);
      if (b < 0) return reject(R_BAD_PCT);
      const refused = need !== 0 ? continuationRefusal(prev, b) : leadingEscapeRefusal(b, allowParams);
      if (refused !== null) return reject(refused);
      need = need !== 0 ? need - 1 : continuationsOwed(b);
      if (b === 0x3b && semiAt < 0) semiAt = seg.length;
      seg += BYTE_TEXT[b]!;
      prev = b;
      i += 2;
      runStart = i + 1;
      continue;
    }

    if (need !== 0) return reject(R_BAD_UTF8);
    const refused = refusal(k, allowParams);
    if (refused !== null) return reject(refused);
    if (k !== K_SLASH) {
      if (k === K_SEMI && semiAt < 0) semiAt = seg.length;
      seg += k === K_SEMI ? ';' : BYTE_TEXT[c]!; // K_ENCODE characters are emitted percent-encoded
      continue;
    }

    trailing = seg === '' || seg === '.' || seg === '..';
    if (!trailing) {
      if (isDotSegmentWithParams(seg, semiAt)) return reject(R_DOT_PARAMS);
      out += '/' + seg;
    } else if (seg === '..') {
      if (out === '') return reject(R_ABOVE_ROOT);
      out = out.slice(0, out.lastIndexOf('/'));
    }
    seg = '';
    semiAt = -1;
  }

  const path = out === '' ? '/' : trailing ? out + '/' : out;
  return { ok: true, path, query };
}

/** The byte the `%XX` at `i` encodes, or -1 when it is not `%` and two hex digits before `end`. */
function escapedByte(target: string, i: number, end: number): number {
  if (i + 2 >= end) return -1;
  const h1 = hexValue(target.charCodeAt(i + 1));
  const h2 = hexValue(target.charCodeAt(i + 2));
  return h1 < 0 || h2 < 0 ? -1 : (h1 << 4) | h2;
}

/** Reason an encoded byte that starts a character (no continuation byte is owed) is refused, or null. */
function leadingEscapeRefusal(b: number, allowParams: boolean): string | null {
  if (b >= 0x80) return b < 0xc2 || b > 0xf4 ? R_BAD_UTF8 : null;
  if (b < 0x20 || b === 0x7f) return R_ENCODED_CONTROL;
  if (b === 0x2f || b === 0x5c) return R_ENCODED_SLASH;
  // An encoded ';' is data to us but a parameter delimiter to an upstream that decodes first.
  return b === 0x3b && !allowParams ? R_PARAMS : null;
}

/** Continuation bytes owed after an accepted byte that starts a character: 0 for ASCII, 1 to 3 after a lead byte. */
function continuationsOwed(b: number): number {
  return b < 0x80 ? 0 : b < 0xe0 ? 1 : b < 0xf0 ? 2 : 3;
}

/**
 * Reason the encoded byte `b` is refused as a UTF-8 continuation byte after `prev`, or null.
 * It must be in 80..BF, a range five lead bytes narrow (Unicode Table 3-7), which is how
 * overlongs and surrogates are ruled out.
 */
function continuationRefusal(prev: number, b: number): string | null {
  let lo = 0x80;
  let hi = 0xbf;
  switch (prev) {
    case 0xc2: lo = 0xa0; break; // C2 80..9F are the C1 controls
    case 0xe0: lo = 0xa0; break; // E0 80..9F: overlong
    case 0xed: hi = 0x9f; break; // ED A0..BF: surrogates
    case 0xf0: lo = 0x90; break; // F0 80..8F: overlong
    case 0xf4: hi = 0x8f; break; // F4 90..BF: above U+10FFFF
  }
  if (b >= lo && b <= hi) return null;
  return prev === 0xc2 && b >= 0x80 && b < 0xa0 ? R_ENCODED_CONTROL : R_BAD_UTF8;
}

/** True for `.;…` and `..;…`, a dot segment once its parameters (from `semiAt`) are stripped. */
function isDotSegmentWithParams(seg: string, semiAt: number): boolean {
  return semiAt === 1 ? seg.charCodeAt(0) === 0x2e : semiAt === 2 && seg.charCodeAt(0) === 0x2e && seg.charCodeAt(1) === 0x2e;
}
