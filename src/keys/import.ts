import type { NewKey } from '../store/types.js';
import { KeyServiceError } from './errors.js';
import { generateKeyId, looksNative } from './format.js';
import { sha256Hex } from '../util/sha256.js';
import { uuidBytesSha256 } from './hash.js';
import { checkIdentityText, checkList, CONTROL, NAME_MAX, scopeProblem, SUBJECT_MAX } from './validate.js';

const MAX_KEY_BYTES = 8192;
const IMPORT_FIELDS = new Set(['key', 'sha256', 'digestOf', 'subject', 'role', 'scopes', 'name', 'expiresAt']);
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*$/;

/** What validating an import needs besides the lines. */
export interface ImportContext {
  readonly now: number;
  /** The native key prefix: an imported key must not look like a native one. */
  readonly prefix: string;
  /** Lifetime of a key whose line has no `expiresAt`. */
  readonly defaultTtl: number;
  /** Checks a role name (throws KeyServiceError `invalid-argument`). */
  readonly checkRole: (role: unknown) => string;
  /** Which of these digests are already stored. */
  readonly existing: (digests: readonly string[]) => Promise<readonly string[]>;
}

type Report = (msg: string) => void;

/**
 * Validates JSON lines of keys to import (`key` plaintext or `sha256` digest, what the
 * digest is of (`digestOf`), `subject`, `role`, optional `scopes`, `name`, `expiresAt`:
 * absent, the default lifetime from now; null, never) into the records to insert. If any
 * line is bad it throws KeyServiceError `import-invalid` listing each problem as
 * `FILE:LINE message`.
 */
export async function planImport(content: string, file: string, ctx: ImportContext): Promise<NewKey[]> {
  const problems: Array<{ line: number; msg: string }> = [];
  const records: Array<{ line: number; record: NewKey }> = [];
  const seen = new Map<string, number>();
  const lines = content.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const text = lines[i]!.trim();
    if (text === '') continue;
    const lineNo = i + 1;
    const report = (msg: string): void => {
      problems.push({ line: lineNo, msg });
    };
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      report(`invalid JSON: ${(err as Error).message}`);
      continue;
    }
    const rec = importLine(value, ctx, report);
    if (rec === undefined) continue;
    const first = seen.get(rec.sha256!);
    if (first !== undefined) {
      report(`duplicate key (same as line ${first})`);
      continue;
    }
    seen.set(rec.sha256!, lineNo);
    records.push({ line: lineNo, record: rec });
  }
  if (records.length === 0 && problems.length === 0) problems.push({ line: 1, msg: 'no keys to import' });
  if (records.length > 0) {
    const existing = new Set(await ctx.existing(records.map((r) => r.record.sha256!)));
    for (const r of records) {
      if (existing.has(r.record.sha256!)) problems.push({ line: r.line, msg: 'key already imported' });
    }
  }
  if (problems.length > 0) {
    problems.sort((a, b) => a.line - b.line);
    const formatted = problems.map((p) => `${file}:${p.line} ${p.msg}`);
    throw new KeyServiceError('import-invalid', `${new Set(problems.map((p) => p.line)).size} invalid line(s) in ${file}; nothing imported`, { problems: formatted });
  }
  return records.map((r) => r.record);
}

/** One line as a record to insert; undefined (after reporting why) when it is bad. */
function importLine(value: unknown, ctx: ImportContext, report: Report): NewKey | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    report('expected a JSON object');
    return undefined;
  }
  const o = value as Record<string, unknown>;
  let bad = false;
  const fail = (msg: string): void => {
    bad = true;
    report(msg);
  };
  for (const k of Object.keys(o)) if (!IMPORT_FIELDS.has(k)) fail(`unknown field "${k}"`);
  const digest = lineDigest(o, ctx.prefix, fail);
  const field = (what: string, max: number, required: boolean): string | null => {
    const v = o[what];
    if (v === undefined && !required) return null;
    try {
      return checkIdentityText(`"${what}"`, v, max);
    } catch (err) {
      fail((err as Error).message);
      return null;
    }
  };
  const subject = field('subject', SUBJECT_MAX, true);
  let role: string | null = null;
  try {
    role = ctx.checkRole(o.role);
  } catch (err) {
    fail(o.role === undefined ? '"role" is required' : (err as Error).message);
  }
  const name = field('name', NAME_MAX, false);
  const scopes = lineScopes(o.scopes, fail);
  const expiresAt = lineExpiry(o.expiresAt, ctx, fail);
  if (bad || digest === undefined || subject === null || role === null) return undefined;
  return {
    id: generateKeyId(),
    name,
    subject,
    role,
    scopes,
    audiences: [],
    allowedIps: [],
    secretHash: null,
    sha256: digest,
    createdAt: ctx.now,
    notBefore: null,
    expiresAt,
    familyId: null,
    refreshHash: null,
    refreshExpiresAt: null,
  };
}

/** The digest a line's key is looked up by: of its `key` (text or UUID bytes), or its `sha256`. */
function lineDigest(o: Record<string, unknown>, prefix: string, fail: Report): string | undefined {
  const digestOf = o.digestOf ?? 'key';
  if (digestOf !== 'key' && digestOf !== 'uuid-bytes') fail('"digestOf" must be "key" (the key\'s text) or "uuid-bytes" (the 16 bytes of a UUID key)');
  if ((o.key === undefined) === (o.sha256 === undefined)) {
    fail('exactly one of "key" or "sha256" is required');
  } else if (o.key !== undefined && digestOf === 'uuid-bytes') {
    const d = typeof o.key === 'string' ? uuidBytesSha256(o.key) : undefined;
    if (d === undefined) fail('"key" must be a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx) with "digestOf": "uuid-bytes"');
    else return d;
  } else if (o.key !== undefined) {
    const k = o.key;
    if (typeof k !== 'string' || k === '') fail('"key" must be a non-empty string');
    else if (Buffer.byteLength(k) > MAX_KEY_BYTES) fail(`"key" is longer than ${MAX_KEY_BYTES} bytes`);
    else if (/\s/.test(k) || CONTROL.test(k)) fail('"key" contains whitespace or control characters');
    else if (k.includes(':')) fail('"key" contains ":" (everything up to the last ":" is stripped as a connection-string preamble, so it could never match)');
    else if (looksNative(k, prefix)) fail(`"key" starts with "${prefix}_", the native key prefix: it would never be looked up as an imported key`);
    else if (COMPACT_JWS.test(k)) fail('"key" looks like a JWT (three dot-separated parts): it would be verified as a token, not looked up');
    else return sha256Hex(k);
  } else {
    const d = o.sha256;
    if (typeof d !== 'string' || !/^[0-9a-f]{64}$/.test(d)) fail('"sha256" must be 64 lowercase hex characters');
    else return d;
  }
  return undefined;
}

function lineScopes(v: unknown, fail: Report): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) {
    fail('"scopes" must be an array of strings');
    return [];
  }
  try {
    return checkList('"scopes"', v, scopeProblem);
  } catch (err) {
    fail((err as Error).message);
    return [];
  }
}

function lineExpiry(v: unknown, ctx: ImportContext, fail: Report): number | null {
  // Absent: the configured lifetime from now, like a key created today; null: never.
  if (v === null) return null;
  if (v === undefined) return ctx.now + ctx.defaultTtl;
  const t = typeof v === 'string' ? instant(v) : Number.NaN;
  if (Number.isNaN(t)) {
    fail('"expiresAt" must be an RFC 3339 date-time with its offset (2026-12-07T20:26:37Z, or +00:00; PostgreSQL\'s 2026-12-07 20:26:37+00 too), or null for never');
    return ctx.now + ctx.defaultTtl;
  }
  // A past expiry is imported as it is: services revoke keys by setting their expiry to
  // now, and an export of their keys must import whole, those keys refused as expired.
  // Earlier than 1970 (Go's zero time is year 1) is stored as 1970: both are long past,
  // and a year below 100 does not survive the round trip through the database drivers.
  return Math.max(t, 0);
}

/**
 * An RFC 3339 date-time with its offset (`T` or a space between date and time, as
 * PostgreSQL writes `timestamptz`; an offset of `Z`, `±hh`, `±hhmm` or `±hh:mm`), in ms; NaN
 * for anything else. `Date.parse` alone reads a time without an offset in the host's local
 * time, so an expiry exported without one would have moved by the host's UTC offset.
 */
function instant(v: string): number {
  const m = RFC3339.exec(v);
  if (m === null) return Number.NaN;
  const offset = m[3] === 'Z' || m[3] === 'z' ? 'Z' : `${m[3]!.slice(0, 3)}:${m[3]!.slice(3).replace(':', '') || '00'}`;
  return Date.parse(`${m[1]}T${m[2]}${offset}`);
}

const RFC3339 = /^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2}(?:\.\d+)?)([Zz]|[+-]\d{2}(?::?\d{2})?)$/;
