import { systemClock, type Clock } from '../clock.js';
import type { ApiKeysConfig } from '../config/schema.js';
import { DomainError } from '../http/problem.js';
import { isStoreError } from '../store/errors.js';
import { keyRevocationId } from '../store/sql.js';
import type { KeyRecord, KeyStore, KeyUpdate, NewKey } from '../store/types.js';
import { AttemptLimiter } from './attempts.js';
import { parseCidr } from './cidr.js';
import { generateKey, generateKeyId, generateRefreshToken, looksNative, parseRefreshToken } from './format.js';
import { hashSecret, sha256Hex, uuidBytesSha256, verifySecret, type HashParams } from './hash.js';

/** Why a key operation was refused. */
export type KeyServiceErrorCode = 'invalid-argument' | 'not-found' | 'conflict' | 'import-invalid' | 'refresh-invalid';

/** Error of KeyService operations; `problems` lists every bad import line as `FILE:LINE message`. */
export class KeyServiceError extends DomainError {
  override readonly name = 'KeyServiceError';
  readonly code: KeyServiceErrorCode;

  constructor(code: KeyServiceErrorCode, message: string, options?: { problems?: readonly string[]; cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/**
 * What the service tells the revocation layer after a revocation is durably stored:
 * - `key`: one key stopped working (`reason` says why);
 * - `change`: one key's grants or end changed; it may still be working;
 * - `subject`: every key of the subject created before `revokedBefore` is revoked
 *   (`keys revoke --subject`); `keyIds` are the keys this revoked.
 */
export type KeyRevocationEvent =
  | {
      readonly kind: 'key';
      readonly keyId: string;
      /** The Identity's `revocationId`: `key:<id>` or `legacy:<sha256>`. */
      readonly revocationId: string;
      readonly subject: string;
      readonly at: number;
      /** When the key would have stopped working anyway (null: never); a marker can expire then. */
      readonly expiresAt: number | null;
      readonly reason: 'revoke' | 'replace' | 'rotate' | 'refresh' | 'family';
    }
  | {
      /** A key's record changed without a revocation (rotation grace, update): caches must re-read it. */
      readonly kind: 'change';
      readonly keyId: string;
      readonly revocationId: string;
      readonly subject: string;
      readonly at: number;
      readonly reason: 'rotate' | 'update';
    }
  | {
      readonly kind: 'subject';
      readonly subject: string;
      readonly revokedBefore: number;
      readonly at: number;
      readonly keyIds: readonly string[];
      readonly revocationIds: readonly string[];
    };

export interface KeyServiceOptions {
  readonly store: KeyStore;
  /**
   * `apiKeys` config: prefix, defaultTtl, hash parameters, refresh TTLs, and the
   * failed-attempt limit that also bounds refreshes (default 10 per 60 s per key id).
   */
  readonly config: Pick<ApiKeysConfig, 'prefix' | 'defaultTtl' | 'hash' | 'refresh'> & Partial<Pick<ApiKeysConfig, 'failedAttempts'>>;
  readonly clock?: Clock;
  /** Known roles: when given, a key's role must be one of them. */
  readonly roles?: readonly string[];
  /** Called after each revocation is stored; awaited, its rejection is the caller's error. */
  readonly onRevoke?: (event: KeyRevocationEvent) => void | Promise<void>;
}

export interface CreateKeyOptions {
  readonly subject: string;
  readonly role: string;
  readonly scopes?: readonly string[];
  readonly name?: string | null;
  /** Lifetime from now (ms). Default `defaultTtl` (`refresh.keyTtl` for refreshable keys); null: never expires. */
  readonly expiresIn?: number | null;
  /** The key starts working this long from now (ms). */
  readonly notBeforeIn?: number;
  readonly allowIps?: readonly string[];
  readonly audiences?: readonly string[];
  /** Revoke the subject's other keys with the same name (unnamed keys when no name). */
  readonly replace?: boolean;
  /** Also issue a refresh token. */
  readonly refreshable?: boolean;
}

/**
 * What `keys update` changes; a field left out keeps its value. Every field is optional so
 * that further limits (rate, uses) slot in beside these.
 */
export interface UpdateKeyOptions {
  readonly role?: string;
  readonly scopes?: readonly string[];
  /** New lifetime from now (ms); null: never expires. */
  readonly expiresIn?: number | null;
}

/** Key status as `keys list` shows it. */
export type KeyStatus = 'active' | 'not-yet-valid' | 'expired' | 'revoked' | 'rotating' | 'rotated';

/** A key as listed: everything but secrets and hashes. */
export interface KeyInfo {
  readonly id: string;
  readonly name: string | null;
  readonly subject: string;
  readonly role: string;
  readonly scopes: readonly string[];
  readonly audiences: readonly string[];
  readonly allowedIps: readonly string[];
  /** Imported legacy key (looked up by digest). */
  readonly legacy: boolean;
  readonly refreshable: boolean;
  readonly createdAt: number;
  readonly notBefore: number | null;
  readonly expiresAt: number | null;
  readonly lastUsedAt: number | null;
  readonly revokedAt: number | null;
  readonly successorId: string | null;
  readonly graceUntil: number | null;
  readonly status: KeyStatus;
}

/** A newly issued key: the only time the plaintext key (and refresh token) exists. */
export interface CreatedKey extends KeyInfo {
  readonly key: string;
  readonly refreshToken?: string;
  readonly refreshExpiresAt?: number;
  /** Ids of keys this creation revoked (`replace`). */
  readonly replaced: readonly string[];
  /** Rotation: the key this one succeeds. */
  readonly rotatedFrom?: string;
}

/** Answer of a successful refresh (docs/reference/api-keys.md). */
export interface RefreshedKey {
  readonly id: string;
  readonly key: string;
  readonly expiresAt: number;
  readonly refreshToken: string;
  readonly refreshExpiresAt: number;
}

export interface ImportResult {
  readonly imported: readonly KeyInfo[];
}

const MAX_KEY_BYTES = 8192;
const SUBJECT_MAX = 256;
const NAME_MAX = 128;
const DEFAULT_GRACE = 3_600_000;
const IMPORT_FIELDS = new Set(['key', 'sha256', 'digestOf', 'subject', 'role', 'scopes', 'name', 'expiresAt']);
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*$/;
const CONTROL = /[\u0000-\u001f\u007f]/;

/** When a key stops working: a rotated key at the end of its grace, any other at its expiry. */
export function effectiveEnd(k: Pick<KeyRecord, 'successorId' | 'graceUntil' | 'expiresAt'>): number | null {
  return k.successorId !== null ? k.graceUntil : k.expiresAt;
}

/** Status of a key at `now`. */
export function keyStatus(k: KeyRecord, now: number): KeyStatus {
  if (k.revokedAt !== null) return k.successorId !== null ? 'rotated' : 'revoked';
  const end = effectiveEnd(k);
  if (k.successorId !== null) return end !== null && now >= end ? 'rotated' : 'rotating';
  if (end !== null && now >= end) return 'expired';
  if (k.notBefore !== null && now < k.notBefore) return 'not-yet-valid';
  return 'active';
}

/**
 * The record that replaces `old` (rotation, refresh): the same holder and grants under a
 * new id and secret, valid from `now`; lifetime and refresh fields as the caller decides.
 */
function successorOf(
  old: KeyRecord,
  id: string,
  secretHash: string,
  now: number,
  rest: Pick<NewKey, 'expiresAt' | 'familyId' | 'refreshHash' | 'refreshExpiresAt'>,
): NewKey {
  return {
    id,
    name: old.name,
    subject: old.subject,
    role: old.role,
    scopes: old.scopes,
    audiences: old.audiences,
    allowedIps: old.allowedIps,
    secretHash,
    sha256: null,
    createdAt: now,
    notBefore: null,
    ...rest,
  };
}

/** Public view of a stored key at `now`. */
export function keyInfo(k: KeyRecord, now: number): KeyInfo {
  return {
    id: k.id,
    name: k.name,
    subject: k.subject,
    role: k.role,
    scopes: k.scopes,
    audiences: k.audiences,
    allowedIps: k.allowedIps,
    legacy: k.sha256 !== null,
    refreshable: k.refreshHash !== null,
    createdAt: k.createdAt,
    notBefore: k.notBefore,
    expiresAt: k.expiresAt,
    lastUsedAt: k.lastUsedAt,
    revokedAt: k.revokedAt,
    successorId: k.successorId,
    graceUntil: k.graceUntil,
    status: keyStatus(k, now),
  };
}

function invalid(message: string): KeyServiceError {
  return new KeyServiceError('invalid-argument', message);
}

function checkText(what: string, v: unknown, max: number): string {
  if (typeof v !== 'string' || v.trim() === '') throw invalid(`${what} must be a non-empty string`);
  if (v.length > max) throw invalid(`${what} is longer than ${max} characters`);
  if (CONTROL.test(v)) throw invalid(`${what} contains control characters`);
  return v;
}

function checkList(what: string, v: readonly unknown[] | undefined, item: (s: string) => string | undefined): string[] {
  if (v === undefined) return [];
  const out: string[] = [];
  for (const x of v) {
    if (typeof x !== 'string' || x === '') throw invalid(`${what}: entries must be non-empty strings`);
    const problem = item(x);
    if (problem !== undefined) throw invalid(`${what}: ${problem}`);
    if (!out.includes(x)) out.push(x);
  }
  return out;
}

const scopeProblem = (s: string): string | undefined => (/\s/.test(s) || CONTROL.test(s) ? `"${s}" contains whitespace` : undefined);
const cidrProblem = (s: string): string | undefined => (parseCidr(s) === undefined ? `"${s}" is not an IP address or CIDR` : undefined);
const audienceProblem = (s: string): string | undefined => (CONTROL.test(s) ? `"${s}" contains control characters` : undefined);

function storeFailure(err: unknown): never {
  if (isStoreError(err, 'conflict')) throw new KeyServiceError('conflict', err.message, { cause: err });
  throw err;
}

/** The expiry `ttl` from `now` (null: never), checked to be a positive duration after `notBefore`. */
function expiryFrom(ttl: number | null, now: number, notBefore: number | null): number | null {
  if (ttl === null) return null;
  if (!(Number.isFinite(ttl) && ttl > 0)) throw invalid('expiry must be a positive duration');
  if (notBefore !== null && now + ttl <= notBefore) throw invalid('the expiry must be later than the not-before time');
  return now + ttl;
}

/**
 * Key lifecycle: create, list, update, revoke, rotate, import, refresh. Writes go to the store;
 * every revocation is then announced through `onRevoke`.
 */
export class KeyService {
  readonly #store: KeyStore;
  readonly #prefix: string;
  readonly #defaultTtl: number;
  readonly #hash: HashParams;
  readonly #refresh: { keyTtl: number; tokenTtl: number };
  readonly #clock: Clock;
  readonly #roles: readonly string[] | undefined;
  readonly #onRevoke: ((event: KeyRevocationEvent) => void | Promise<void>) | undefined;
  /** Failed refreshes: refresh tokens are well-formed for anyone who knows a key id. */
  readonly #refreshAttempts: AttemptLimiter;

  constructor(opts: KeyServiceOptions) {
    this.#store = opts.store;
    this.#prefix = opts.config.prefix;
    this.#defaultTtl = opts.config.defaultTtl;
    this.#hash = opts.config.hash;
    this.#refresh = opts.config.refresh;
    this.#clock = opts.clock ?? systemClock;
    this.#roles = opts.roles;
    this.#onRevoke = opts.onRevoke;
    const clock = this.#clock;
    this.#refreshAttempts = new AttemptLimiter(opts.config.failedAttempts ?? { max: 10, window: 60_000 }, () => clock.now());
  }

  #checkRole(role: unknown): string {
    const r = checkText('role', role, 128);
    if (this.#roles !== undefined && !this.#roles.includes(r)) {
      throw invalid(`unknown role "${r}" (roles: ${this.#roles.join(', ')})`);
    }
    return r;
  }

  async #emit(event: KeyRevocationEvent): Promise<void> {
    await this.#onRevoke?.(event);
  }

  /** Issues a key (and a refresh token for refreshable keys). */
  async create(opts: CreateKeyOptions): Promise<CreatedKey> {
    const now = this.#clock.now();
    const subject = checkText('subject', opts.subject, SUBJECT_MAX);
    const role = this.#checkRole(opts.role);
    const name = opts.name === undefined || opts.name === null ? null : checkText('name', opts.name, NAME_MAX);
    const scopes = checkList('scopes', opts.scopes, scopeProblem);
    const audiences = checkList('audiences', opts.audiences, audienceProblem);
    const allowedIps = checkList('allowed IPs', opts.allowIps, cidrProblem);
    const refreshable = opts.refreshable === true;
    const ttl = opts.expiresIn === undefined ? (refreshable ? this.#refresh.keyTtl : this.#defaultTtl) : opts.expiresIn;
    if (ttl !== null && !(Number.isFinite(ttl) && ttl > 0)) throw invalid('expiry must be a positive duration');
    const nbf = opts.notBeforeIn ?? 0;
    if (!(Number.isFinite(nbf) && nbf >= 0)) throw invalid('not-before must be a duration of zero or more');
    if (ttl !== null && nbf >= ttl) throw invalid('not-before must be earlier than the expiry');

    const gen = generateKey(this.#prefix);
    const refresh = refreshable ? generateRefreshToken(this.#prefix, gen.id) : undefined;
    const [secretHash, refreshHash] = await Promise.all([
      hashSecret(gen.secret, this.#hash),
      refresh === undefined ? Promise.resolve(null) : hashSecret(refresh.secret, this.#hash),
    ]);
    const record: NewKey = {
      id: gen.id,
      name,
      subject,
      role,
      scopes,
      audiences,
      allowedIps,
      secretHash,
      sha256: null,
      createdAt: now,
      notBefore: nbf > 0 ? now + nbf : null,
      expiresAt: ttl === null ? null : now + ttl,
      familyId: refreshable ? gen.id : null,
      refreshHash,
      refreshExpiresAt: refreshable ? now + this.#refresh.tokenTtl : null,
    };
    await this.#store.insertKey(record).catch(storeFailure);
    const replaced = opts.replace === true ? await this.#store.revokeSubjectKeys(subject, now, { name, exceptId: gen.id }) : [];
    for (const r of replaced) {
      await this.#emit({ kind: 'key', keyId: r.id, revocationId: r.revocationId, subject, at: now, expiresAt: r.expiresAt, reason: 'replace' });
    }
    return {
      ...keyInfo({ ...record, lastUsedAt: null, revokedAt: null, successorId: null, graceUntil: null, refreshSpentAt: null }, now),
      key: gen.key,
      ...(refresh === undefined ? {} : { refreshToken: refresh.key, refreshExpiresAt: record.refreshExpiresAt! }),
      replaced: replaced.map((r) => r.id),
    };
  }

  /** Keys (optionally of one subject), oldest first, without secrets. */
  async list(filter?: { subject?: string | undefined }): Promise<KeyInfo[]> {
    const now = this.#clock.now();
    return (await this.#store.listKeys(filter)).map((k) => keyInfo(k, now));
  }

  /** Revokes one key. `changed` is false when it was already revoked. */
  async revoke(id: string): Promise<{ key: KeyInfo; changed: boolean }> {
    const now = this.#clock.now();
    const res = await this.#store.revokeKey(id, now);
    if (res === undefined) throw new KeyServiceError('not-found', `no key with id ${id}`);
    if (res.changed) {
      const k = res.key;
      await this.#emit({ kind: 'key', keyId: k.id, revocationId: keyRevocationId(k), subject: k.subject, at: now, expiresAt: effectiveEnd(k), reason: 'revoke' });
    }
    return { key: keyInfo(res.key, now), changed: res.changed };
  }

  /** Revokes every key of a subject (and stops its refresh tokens). */
  async revokeSubject(subject: string): Promise<{ revoked: readonly string[] }> {
    checkText('subject', subject, SUBJECT_MAX);
    const now = this.#clock.now();
    const revoked = await this.#store.revokeSubjectKeys(subject, now);
    await this.#emit({
      kind: 'subject',
      subject,
      revokedBefore: now,
      at: now,
      keyIds: revoked.map((r) => r.id),
      revocationIds: revoked.map((r) => r.revocationId),
    });
    return { revoked: revoked.map((r) => r.id) };
  }

  /**
   * Issues a successor with the same grants (subject, role, scopes, audiences, allowed
   * IPs, name, and the same lifetime from now). The old key keeps working for `graceMs`
   * (default 1h); with 0 it is revoked at once.
   */
  async rotate(id: string, graceMs: number = DEFAULT_GRACE): Promise<CreatedKey & { graceUntil: number }> {
    if (!(Number.isFinite(graceMs) && graceMs >= 0)) throw invalid('grace must be a duration of zero or more');
    const now = this.#clock.now();
    const old = await this.#store.getKey(id);
    if (old === undefined) throw new KeyServiceError('not-found', `no key with id ${id}`);
    const status = keyStatus(old, now);
    if (status === 'revoked' || status === 'expired' || status === 'rotated' || status === 'rotating') {
      throw new KeyServiceError('conflict', `key ${id} is ${status}: only a working key can be rotated`);
    }
    const gen = generateKey(this.#prefix);
    // A refreshable key's successor gets its own refresh token; the old one is spent by the
    // rotation, and presenting it is refused without touching the successor (see refresh).
    const refresh = old.refreshHash === null ? undefined : generateRefreshToken(this.#prefix, gen.id);
    const [secretHash, refreshHash] = await Promise.all([
      hashSecret(gen.secret, this.#hash),
      refresh === undefined ? Promise.resolve(null) : hashSecret(refresh.secret, this.#hash),
    ]);
    const lifetime = old.expiresAt === null ? null : old.expiresAt - old.createdAt;
    const successor = successorOf(old, gen.id, secretHash, now, {
      expiresAt: lifetime === null ? null : now + lifetime,
      // The successor continues the key's lineage: rate-limit buckets and quotas carry over.
      familyId: old.familyId ?? old.id,
      refreshHash,
      refreshExpiresAt: refresh === undefined ? null : now + this.#refresh.tokenTtl,
    });
    const graceUntil = now + graceMs;
    await this.#store.rotateKey(id, successor, now, graceUntil).catch(storeFailure);
    const ref = { keyId: old.id, revocationId: keyRevocationId(old), subject: old.subject, at: now };
    // With a grace the old key still works, but until its grace only: cached copies that
    // know nothing of the grace must go.
    if (graceMs === 0) await this.#emit({ kind: 'key', ...ref, expiresAt: graceUntil, reason: 'rotate' });
    else await this.#emit({ kind: 'change', ...ref, reason: 'rotate' });
    return {
      ...keyInfo({ ...successor, lastUsedAt: null, revokedAt: null, successorId: null, graceUntil: null, refreshSpentAt: null }, now),
      key: gen.key,
      ...(refresh === undefined ? {} : { refreshToken: refresh.key, refreshExpiresAt: successor.refreshExpiresAt! }),
      replaced: [],
      rotatedFrom: id,
      graceUntil,
    };
  }

  /**
   * Changes a working key's role, scopes or expiry in place (same id, same secret); every
   * instance drops its cached copy. Fields left out keep their value.
   */
  async update(id: string, changes: UpdateKeyOptions): Promise<KeyInfo> {
    if (changes.role === undefined && changes.scopes === undefined && changes.expiresIn === undefined) {
      throw invalid('nothing to update: give a role, scopes or an expiry');
    }
    const now = this.#clock.now();
    const old = await this.#store.getKey(id);
    if (old === undefined) throw new KeyServiceError('not-found', `no key with id ${id}`);
    const status = keyStatus(old, now);
    if (status !== 'active' && status !== 'not-yet-valid') {
      throw new KeyServiceError('conflict', `key ${id} is ${status}: only a working key can be updated`);
    }
    const fields: KeyUpdate = {
      role: changes.role === undefined ? old.role : this.#checkRole(changes.role),
      scopes: changes.scopes === undefined ? old.scopes : checkList('scopes', changes.scopes, scopeProblem),
      expiresAt: changes.expiresIn === undefined ? old.expiresAt : expiryFrom(changes.expiresIn, now, old.notBefore),
    };
    const updated = await this.#store.updateKey(id, fields);
    if (updated === undefined) throw new KeyServiceError('conflict', `key ${id} was revoked or rotated meanwhile`);
    await this.#emit({ kind: 'change', keyId: id, revocationId: keyRevocationId(updated), subject: updated.subject, at: now, reason: 'update' });
    return keyInfo(updated, now);
  }

  /** Revokes every key named `name` (of one subject when given): a job's keys when the job ends. */
  async revokeByName(name: string, subject?: string): Promise<{ revoked: readonly string[] }> {
    checkText('name', name, NAME_MAX);
    if (subject !== undefined) checkText('subject', subject, SUBJECT_MAX);
    const now = this.#clock.now();
    const revoked = await this.#store.revokeNamedKeys(name, now, subject);
    for (const r of revoked) {
      await this.#emit({ kind: 'key', keyId: r.id, revocationId: r.revocationId, subject: r.subject, at: now, expiresAt: r.expiresAt, reason: 'revoke' });
    }
    return { revoked: revoked.map((r) => r.id) };
  }

  /**
   * Imports existing keys from JSON lines (`key` plaintext or `sha256` digest, what the
   * digest is of (`digestOf`), `subject`, `role`, optional `scopes`, `name`, `expiresAt`:
   * absent, `apiKeys.defaultTtl` from now; null, never). Every line is validated first; if
   * any is bad nothing is imported and the error lists each problem as `FILE:LINE message`.
   */
  async importKeys(content: string, file: string): Promise<ImportResult> {
    const now = this.#clock.now();
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
      const rec = this.#importLine(value, now, report);
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
      const existing = new Set(await this.#store.existingSha256(records.map((r) => r.record.sha256!)));
      for (const r of records) {
        if (existing.has(r.record.sha256!)) problems.push({ line: r.line, msg: 'key already imported' });
      }
    }
    if (problems.length > 0) {
      problems.sort((a, b) => a.line - b.line);
      const formatted = problems.map((p) => `${file}:${p.line} ${p.msg}`);
      throw new KeyServiceError('import-invalid', `${new Set(problems.map((p) => p.line)).size} invalid line(s) in ${file}; nothing imported`, { problems: formatted });
    }
    await this.#store.insertKeys(records.map((r) => r.record)).catch(storeFailure);
    return { imported: records.map((r) => keyInfo({ ...r.record, lastUsedAt: null, revokedAt: null, successorId: null, graceUntil: null, refreshSpentAt: null }, now)) };
  }

  #importLine(value: unknown, now: number, report: (msg: string) => void): NewKey | undefined {
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
    let digest: string | undefined;
    const digestOf = o.digestOf ?? 'key';
    if (digestOf !== 'key' && digestOf !== 'uuid-bytes') fail('"digestOf" must be "key" (the key\'s text) or "uuid-bytes" (the 16 bytes of a UUID key)');
    if ((o.key === undefined) === (o.sha256 === undefined)) {
      fail('exactly one of "key" or "sha256" is required');
    } else if (o.key !== undefined && digestOf === 'uuid-bytes') {
      const d = typeof o.key === 'string' ? uuidBytesSha256(o.key) : undefined;
      if (d === undefined) fail('"key" must be a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx) with "digestOf": "uuid-bytes"');
      else digest = d;
    } else if (o.key !== undefined) {
      const k = o.key;
      if (typeof k !== 'string' || k === '') fail('"key" must be a non-empty string');
      else if (Buffer.byteLength(k) > MAX_KEY_BYTES) fail(`"key" is longer than ${MAX_KEY_BYTES} bytes`);
      else if (/\s/.test(k) || CONTROL.test(k)) fail('"key" contains whitespace or control characters');
      else if (k.includes(':')) fail('"key" contains ":" (everything up to the last ":" is stripped as a connection-string preamble, so it could never match)');
      else if (looksNative(k, this.#prefix)) fail(`"key" starts with "${this.#prefix}_", the native key prefix: it would never be looked up as an imported key`);
      else if (COMPACT_JWS.test(k)) fail('"key" looks like a JWT (three dot-separated parts): it would be verified as a token, not looked up');
      else digest = sha256Hex(k);
    } else {
      const d = o.sha256;
      if (typeof d !== 'string' || !/^[0-9a-f]{64}$/.test(d)) fail('"sha256" must be 64 lowercase hex characters');
      else digest = d;
    }
    const field = (what: string, max: number, required: boolean): string | null => {
      const v = o[what];
      if (v === undefined && !required) return null;
      try {
        return checkText(`"${what}"`, v, max);
      } catch (err) {
        fail((err as Error).message);
        return null;
      }
    };
    const subject = field('subject', SUBJECT_MAX, true);
    let role: string | null = null;
    try {
      role = this.#checkRole(o.role);
    } catch (err) {
      fail(o.role === undefined ? '"role" is required' : (err as Error).message);
    }
    const name = field('name', NAME_MAX, false);
    let scopes: string[] = [];
    if (o.scopes !== undefined) {
      if (!Array.isArray(o.scopes)) fail('"scopes" must be an array of strings');
      else {
        try {
          scopes = checkList('"scopes"', o.scopes, scopeProblem);
        } catch (err) {
          fail((err as Error).message);
        }
      }
    }
    // Absent: the configured lifetime from now, like a key created today; null: never.
    let expiresAt: number | null = o.expiresAt === null ? null : now + this.#defaultTtl;
    if (o.expiresAt !== undefined && o.expiresAt !== null) {
      const t = typeof o.expiresAt === 'string' ? Date.parse(o.expiresAt) : Number.NaN;
      if (Number.isNaN(t)) fail('"expiresAt" must be an ISO 8601 date-time, or null for never');
      // A past expiry is imported as it is: services revoke keys by setting their expiry to
      // now, and an export of their keys must import whole, those keys refused as expired.
      // Earlier than 1970 (Go's zero time is year 1) is stored as 1970: both are long past,
      // and a year below 100 does not survive the round trip through the database drivers.
      else expiresAt = Math.max(t, 0);
    }
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
      createdAt: now,
      notBefore: null,
      expiresAt,
      familyId: null,
      refreshHash: null,
      refreshExpiresAt: null,
    };
  }

  /**
   * Exchanges a refresh token for a new key and refresh token (same grants, same family);
   * the old key and token are revoked at once. A spent token revokes the whole family.
   * Refusals are KeyServiceError `refresh-invalid` (429 `rate-limited` for a client past the
   * failed-attempt limit); store failures are the store's own errors.
   */
  async refresh(token: string, clientIp = ''): Promise<RefreshedKey> {
    const refused = (detail = 'The refresh token is not valid.'): KeyServiceError => new KeyServiceError('refresh-invalid', detail);
    const parsed = parseRefreshToken(token, this.#prefix);
    if (parsed === null) throw refused();
    const now = this.#clock.now();
    const old = await this.#store.getKey(parsed.id);
    if (old === undefined || old.refreshHash === null) throw refused();
    // Anyone who knows a key id can forge a well-formed token, and each costs an argon2
    // run: a client past the limit is refused without one. Counted before verifying so
    // that a concurrent burst cannot overshoot; taken back when the token proves right.
    this.#refreshAttempts.check(parsed.id, clientIp, 'Too many failed refreshes from this address; retry later.');
    this.#refreshAttempts.count(parsed.id, clientIp, 1);
    let ok: boolean;
    try {
      ok = await verifySecret(old.refreshHash, parsed.secret);
    } catch (err) {
      this.#refreshAttempts.count(parsed.id, clientIp, -1);
      throw err;
    }
    if (!ok) throw refused();
    this.#refreshAttempts.count(parsed.id, clientIp, -1);
    // Spent by the rotation, not replayed: the successor has a token of its own.
    if (old.successorId !== null) throw refused('The key of this refresh token was rotated; use the refresh token issued with its successor.');
    if (old.refreshSpentAt !== null) {
      await this.#revokeFamily(old, now);
      throw refused('The refresh token was already used; every key of its family is revoked.');
    }
    if (old.revokedAt !== null) throw refused('The key of this refresh token is revoked.');
    if (old.refreshExpiresAt !== null && now >= old.refreshExpiresAt) throw refused('The refresh token has expired.');
    const subjectRevs = await this.#store.getSubjectRevocations(old.subject);
    if (subjectRevs.some((r) => r.scope !== 'tokens' && old.createdAt < r.revokedBefore)) throw refused('The key of this refresh token is revoked.');

    const gen = generateKey(this.#prefix);
    const rt = generateRefreshToken(this.#prefix, gen.id);
    const [secretHash, refreshHash] = await Promise.all([hashSecret(gen.secret, this.#hash), hashSecret(rt.secret, this.#hash)]);
    const expiresAt = now + this.#refresh.keyTtl;
    const refreshExpiresAt = now + this.#refresh.tokenTtl;
    const successor = successorOf(old, gen.id, secretHash, now, { expiresAt, familyId: old.familyId ?? old.id, refreshHash, refreshExpiresAt });
    if (!(await this.#store.refreshKey(old.id, successor, now))) {
      // Lost a race with a rotation: the token is spent, not replayed.
      if ((await this.#store.getKey(old.id))?.successorId != null) throw refused('The key of this refresh token was rotated; use the refresh token issued with its successor.');
      // Lost a race with another use of the same token: that is a replay too.
      await this.#revokeFamily(old, now);
      throw refused('The refresh token was already used; every key of its family is revoked.');
    }
    await this.#emit({ kind: 'key', keyId: old.id, revocationId: keyRevocationId(old), subject: old.subject, at: now, expiresAt: effectiveEnd(old), reason: 'refresh' });
    return { id: gen.id, key: gen.key, expiresAt, refreshToken: rt.key, refreshExpiresAt };
  }

  async #revokeFamily(k: KeyRecord, now: number): Promise<void> {
    const revoked = await this.#store.revokeFamily(k.familyId ?? k.id, now);
    for (const r of revoked) {
      await this.#emit({ kind: 'key', keyId: r.id, revocationId: r.revocationId, subject: r.subject, at: now, expiresAt: r.expiresAt, reason: 'family' });
    }
  }
}

