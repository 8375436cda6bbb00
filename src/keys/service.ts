import { systemClock, type Clock } from '../clock.js';
import { keyRevocationId } from '../revocation/ids.js';
import { lineageOf, type KeyRecord, type KeyStore, type KeyUpdate, type NewKey } from '../store/types.js';
import { AttemptLimiter } from '../util/attempt-limiter.js';
import { AnnouncementError, invalid, KeyServiceError, storeFailure } from './errors.js';
import type { KeyRevocationEvent } from './events.js';
import { generateKey, generateRefreshToken } from './format.js';
import { hashSecret, type HashParams } from './hash.js';
import { planImport } from './import.js';
import { keyInfo, keyStatus, newKeyInfo, type KeyInfo } from './info.js';
import { effectiveEnd } from './lifetime.js';
import { checkRateLimit, checkUses } from './limits.js';
import { exchangeRefreshToken, type BoundedVerification, type RefreshedKey } from './refresh.js';
import { rotateKey, type RotatedKey } from './rotate.js';
import { audienceProblem, checkIdentityText, checkLongest, checkList, checkText, cidrProblem, expiryFrom, NAME_MAX, scopeProblem, SUBJECT_MAX } from './validate.js';

export { AnnouncementError, KeyServiceError, type KeyServiceErrorCode } from './errors.js';
export type { KeyRevocationEvent } from './events.js';
export { keyInfo, keyStatus, type KeyInfo, type KeyStatus } from './info.js';
export type { RefreshedKey } from './refresh.js';
export type { CreatedKey, CreateKeyOptions, ImportResult, KeyServiceOptions, UpdateKeyOptions } from './options.js';
import type { CreatedKey, CreateKeyOptions, ImportResult, KeyServiceOptions, UpdateKeyOptions } from './options.js';

const DEFAULT_GRACE = 3_600_000;

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
    const subject = checkIdentityText('subject', opts.subject, SUBJECT_MAX);
    const role = this.#checkRole(opts.role);
    const name = opts.name === undefined || opts.name === null ? null : checkIdentityText('name', opts.name, NAME_MAX);
    const scopes = checkList('scopes', opts.scopes, scopeProblem);
    const audiences = checkList('audiences', opts.audiences, audienceProblem);
    const allowedIps = checkList('allowed IPs', opts.allowIps, cidrProblem);
    const refreshable = opts.refreshable === true;
    const ttl = opts.expiresIn === undefined ? (refreshable ? this.#refresh.keyTtl : this.#defaultTtl) : opts.expiresIn;
    if (ttl !== null && !(Number.isFinite(ttl) && ttl > 0)) throw invalid('expiry must be a positive duration');
    const nbf = opts.notBeforeIn ?? 0;
    if (!(Number.isFinite(nbf) && nbf >= 0)) throw invalid('not-before must be a duration of zero or more');
    if (ttl !== null && nbf >= ttl) throw invalid('not-before must be earlier than the expiry');
    if (ttl !== null) checkLongest('the expiry', ttl);
    checkLongest('not-before', nbf);

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
      rateLimit: opts.rateLimit === undefined || opts.rateLimit === null ? null : checkRateLimit(opts.rateLimit),
      uses: opts.uses === undefined || opts.uses === null ? null : checkUses(opts.uses),
    };
    await this.#store.insertKey(record).catch(storeFailure);
    const replaced = opts.replace === true ? await this.#store.revokeSubjectKeys(subject, now, { name, exceptId: gen.id }) : [];
    const created = {
      ...newKeyInfo(record, now),
      key: gen.key,
      ...(refresh === undefined ? {} : { refreshToken: refresh.key, refreshExpiresAt: record.refreshExpiresAt! }),
      replaced: replaced.map((r) => r.id),
    };
    try {
      for (const r of replaced) {
        await this.#emit({ kind: 'key', keyId: r.id, revocationId: r.revocationId, subject, at: now, expiresAt: r.expiresAt, reason: 'replace' });
      }
    } catch (err) {
      throw new AnnouncementError(created, replaced.map((r) => `keys revoke ${r.id}`).join('; '), err);
    }
    return created;
  }

  /** Keys (optionally of one subject), oldest first, without secrets. */
  async list(filter?: { subject?: string | undefined }): Promise<KeyInfo[]> {
    const now = this.#clock.now();
    return (await this.#store.listKeys(filter)).map((k) => keyInfo(k, now));
  }

  /**
   * Revokes one key. `changed` is false when it was already revoked. The revocation is
   * announced either way: the store is written first, so a run whose announcement failed
   * (Redis unreachable) left the key revoked but still cached by every gateway, and its
   * retry is what tells them.
   */
  async revoke(id: string): Promise<{ key: KeyInfo; changed: boolean }> {
    const now = this.#clock.now();
    const res = await this.#store.revokeKey(id, now);
    if (res === undefined) throw new KeyServiceError('not-found', `no key with id ${id}`);
    const k = res.key;
    await this.#emit({ kind: 'key', keyId: k.id, revocationId: keyRevocationId(k), subject: k.subject, at: k.revokedAt ?? now, expiresAt: effectiveEnd(k), reason: 'revoke' });
    return { key: keyInfo(k, now), changed: res.changed };
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
   * (default 1h); with 0 it is revoked at once. See {@link rotateKey}.
   */
  rotate(id: string, graceMs: number = DEFAULT_GRACE): Promise<RotatedKey> {
    return rotateKey(id, graceMs, {
      store: this.#store,
      prefix: this.#prefix,
      hash: this.#hash,
      tokenTtl: this.#refresh.tokenTtl,
      clock: this.#clock,
      emit: (event) => this.#emit(event),
    });
  }

  /**
   * Changes a working key's role, scopes or expiry in place (same id, same secret); every
   * instance drops its cached copy. Fields left out keep their value.
   */
  async update(id: string, changes: UpdateKeyOptions): Promise<KeyInfo> {
    const none = [changes.role, changes.scopes, changes.expiresIn, changes.rateLimit, changes.uses].every((c) => c === undefined);
    if (none) throw invalid('nothing to update: give a role, scopes, an expiry, a rate limit or uses');
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
      ...(changes.rateLimit === undefined ? {} : { rateLimit: changes.rateLimit === null ? null : checkRateLimit(changes.rateLimit) }),
      ...(changes.uses === undefined ? {} : { uses: changes.uses === null ? null : checkUses(changes.uses) }),
    };
    const updated = await this.#store.updateKey(id, fields);
    if (updated === undefined) throw new KeyServiceError('conflict', `key ${id} was revoked or rotated meanwhile`);
    for (const k of changes.uses === undefined ? [updated] : await this.#lineage(updated)) {
      await this.#emit({ kind: 'change', keyId: k.id, revocationId: keyRevocationId(k), subject: k.subject, at: now, reason: 'update' });
    }
    return keyInfo(updated, now);
  }

  /** The working keys of `key`'s lineage (a rotated one in its grace too): new credits reach them all. */
  async #lineage(key: KeyRecord): Promise<KeyRecord[]> {
    const lineage = lineageOf(key);
    const all = await this.#store.listKeys({ subject: key.subject });
    return [key, ...all.filter((k) => k.id !== key.id && k.revokedAt === null && lineageOf(k) === lineage)];
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
    // Nothing left to revoke: maybe a retry of a run whose announcements failed after the
    // store was written. Announce the keys of that name still within their life again.
    if (revoked.length === 0) {
      for (const k of await this.#store.listKeys(subject === undefined ? undefined : { subject })) {
        const end = effectiveEnd(k);
        if (k.name !== name || k.revokedAt === null || (end !== null && end <= now)) continue;
        await this.#emit({ kind: 'key', keyId: k.id, revocationId: keyRevocationId(k), subject: k.subject, at: k.revokedAt, expiresAt: end, reason: 'revoke' });
      }
    }
    return { revoked: revoked.map((r) => r.id) };
  }

  /**
   * Imports existing keys from JSON lines (see {@link planImport}): every line is
   * validated first; if any is bad nothing is imported.
   */
  async importKeys(content: string, file: string): Promise<ImportResult> {
    const now = this.#clock.now();
    const records = await planImport(content, file, {
      now,
      prefix: this.#prefix,
      defaultTtl: this.#defaultTtl,
      checkRole: (role) => this.#checkRole(role),
      existing: (digests) => this.#store.existingSha256(digests),
    });
    await this.#store.insertKeys(records).catch(storeFailure);
    return { imported: records.map((r) => newKeyInfo(r, now)) };
  }

  /**
   * Exchanges a refresh token for a new key and refresh token (same grants, same family);
   * the old key and token are revoked at once (see {@link exchangeRefreshToken}).
   */
  /** True while refresh tokens of `keyId` have failed `failedAttempts.max` times within the window. */
  refreshUnderAttack(keyId: string): boolean {
    return this.#refreshAttempts.underAttack(keyId);
  }

  async refresh(token: string, clientIp = '', bounded?: BoundedVerification): Promise<RefreshedKey> {
    return exchangeRefreshToken(token, clientIp, {
      bounded,
      store: this.#store,
      prefix: this.#prefix,
      hash: this.#hash,
      lifetimes: this.#refresh,
      clock: this.#clock,
      attempts: this.#refreshAttempts,
      emit: (event) => this.#emit(event),
    });
  }
}
