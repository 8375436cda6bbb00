import { randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';

/**
 * Native key format: `<prefix>_<id>_<secret><checksum>`.
 * - id: 14 base62 characters (83 random bits) — public, used for lookup, logs and headers;
 * - secret: 43 base62 characters (256 random bits) — stored only as an argon2id hash;
 * - checksum: CRC32 of everything before it, as 6 base62 characters, so a mistyped or
 *   truncated key is refused without a store lookup.
 * Refresh tokens use the same layout with `<prefix>_rt_` in front of the id.
 */
export const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
export const ID_LENGTH = 14;
export const SECRET_LENGTH = 43;
export const CHECKSUM_LENGTH = 6;

/** The parts of a parsed native key or refresh token. */
export interface ParsedKey {
  readonly id: string;
  readonly secret: string;
}

/** A freshly generated key: the plaintext exists only here and in the creator's output. */
export interface GeneratedKey extends ParsedKey {
  readonly key: string;
}

/** Uniform base62 string from the CSPRNG (rejection sampling: no modulo bias). */
export function randomBase62(length: number): string {
  let out = '';
  while (out.length < length) {
    const bytes = randomBytes(Math.ceil((length - out.length) * 1.3) + 4);
    for (const b of bytes) {
      if (b < 248) {
        out += BASE62[b % 62];
        if (out.length === length) break;
      }
    }
  }
  return out;
}

function checksum(body: string): string {
  let n = crc32(body);
  let s = '';
  for (let i = 0; i < CHECKSUM_LENGTH; i++) {
    s = BASE62[n % 62] + s;
    n = Math.floor(n / 62);
  }
  return s;
}

const B62 = '[0-9A-Za-z]';

interface Parser {
  readonly key: RegExp;
  readonly refresh: RegExp;
}

const parsers = new Map<string, Parser>();

function parser(prefix: string): Parser {
  let p = parsers.get(prefix);
  if (p === undefined) {
    const esc = prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    const tail = `_(${B62}{${ID_LENGTH}})_(${B62}{${SECRET_LENGTH}})(${B62}{${CHECKSUM_LENGTH}})$`;
    p = { key: new RegExp(`^${esc}${tail}`), refresh: new RegExp(`^${esc}_rt${tail}`) };
    parsers.set(prefix, p);
  }
  return p;
}

function parseWith(re: RegExp, value: string): ParsedKey | null {
  const m = re.exec(value);
  if (m === null) return null;
  const body = value.slice(0, value.length - CHECKSUM_LENGTH);
  if (checksum(body) !== m[3]) return null;
  return { id: m[1]!, secret: m[2]! };
}

/** Generates a new native key id. */
export function generateKeyId(): string {
  return randomBase62(ID_LENGTH);
}

/** Builds `<prefix>_<id>_<secret><checksum>`. */
export function formatKey(prefix: string, id: string, secret: string): string {
  const body = `${prefix}_${id}_${secret}`;
  return body + checksum(body);
}

/** Generates a new native key (fresh id and secret). */
export function generateKey(prefix: string, id = generateKeyId()): GeneratedKey {
  const secret = randomBase62(SECRET_LENGTH);
  return { id, secret, key: formatKey(prefix, id, secret) };
}

/**
 * Splits a native key into id and secret, or null when it is not one: wrong prefix or
 * shape, or a checksum mismatch (a typo). Never touches the store.
 */
export function parseKey(value: string, prefix: string): ParsedKey | null {
  return parseWith(parser(prefix).key, value);
}

/** Whether a value claims to be a native key (starts with `<prefix>_`), well-formed or not. */
export function looksNative(value: string, prefix: string): boolean {
  return value.length > prefix.length && value.startsWith(prefix) && value.charCodeAt(prefix.length) === 95; // '_'
}

/** Builds a refresh token `<prefix>_rt_<keyId>_<secret><checksum>` for a key. */
export function generateRefreshToken(prefix: string, keyId: string): GeneratedKey {
  const secret = randomBase62(SECRET_LENGTH);
  const body = `${prefix}_rt_${keyId}_${secret}`;
  return { id: keyId, secret, key: body + checksum(body) };
}

/** Splits a refresh token into its key id and secret, or null (malformed / checksum). */
export function parseRefreshToken(value: string, prefix: string): ParsedKey | null {
  return parseWith(parser(prefix).refresh, value);
}
