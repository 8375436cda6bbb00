/**
 * The key store: the durable record of API keys and of every revocation (docs/reference/api-keys.md, docs/reference/revocation.md).
 *
 * Two implementations share one store over SQL (`sql.ts`), each with its dialect's few own
 * statements and migrations: PostgreSQL through `pg` (`postgres.ts`) and the embedded
 * store on Node's built-in SQLite (`sqlite.ts`). Every time crosses this
 * interface as milliseconds since the epoch (`number`), `null` meaning "not set"; the
 * store never reads a clock itself, so callers with an injected clock stay consistent.
 */

import type { ListenHandlers, RevokedKey, SubjectRevocation, TokenRevocation } from './records.js';

export { REVOCATION_CHANNEL, type TokenRevocation, type SubjectRevocationScope, type SubjectRevocation, type RevokedKey, type RevocationNotice, type ListenHandlers } from './records.js';

/** A stored API key (native or imported legacy). */
export interface KeyRecord {
  /** Public key id: part of a native key, generated at import for a legacy one. */
  readonly id: string;
  readonly name: string | null;
  readonly subject: string;
  readonly role: string;
  readonly scopes: readonly string[];
  /** Audiences the key is restricted to; empty: none declared. */
  readonly audiences: readonly string[];
  /** IP addresses / CIDRs the key may be used from; empty: any. */
  readonly allowedIps: readonly string[];
  /** argon2id PHC string of the secret; null for legacy keys. */
  readonly secretHash: string | null;
  /** Lowercase hex SHA-256 of the whole key; legacy keys only (unique). */
  readonly sha256: string | null;
  readonly createdAt: number;
  readonly notBefore: number | null;
  readonly expiresAt: number | null;
  readonly lastUsedAt: number | null;
  readonly revokedAt: number | null;
  /** Set when the key was rotated: the id of its successor. */
  readonly successorId: string | null;
  /** A rotated key keeps working until this time (then it is over, whatever `expiresAt` says). */
  readonly graceUntil: number | null;
  /** Refreshable keys: id of the first key of the refresh chain (shared by all descendants). */
  readonly familyId: string | null;
  /** argon2id PHC string of the refresh token's secret. */
  readonly refreshHash: string | null;
  readonly refreshExpiresAt: number | null;
  /** When the refresh token was used; a second use revokes the family. */
  readonly refreshSpentAt: number | null;
  /** The key's own rate limit, on every route beside the route's policies; null: none. */
  readonly rateLimit: KeyRateLimit | null;
  /**
   * Usage credits left to the key's lineage when the record was read; null: unlimited.
   * Kept per lineage ({@link lineageOf}), not on the key.
   */
  readonly remaining: number | null;
}

/** `--rate-limit N/D`: `limit` requests per sliding `window` (ms). */
export interface KeyRateLimit {
  readonly limit: number;
  readonly window: number;
}

/**
 * The lineage of a key: the first key's id, shared by its rotation successors and
 * refreshed descendants. Rate-limit buckets and usage credits are counted by it.
 */
export function lineageOf(k: Pick<KeyRecord, 'id' | 'familyId'>): string {
  return k.familyId ?? k.id;
}

/**
 * What `insertKey` needs: a record without the fields only later events set. `uses`
 * gives the new key's lineage that many credits (left out or null: no change).
 */
export type NewKey = Omit<KeyRecord, 'lastUsedAt' | 'revokedAt' | 'successorId' | 'graceUntil' | 'refreshSpentAt' | 'rateLimit' | 'remaining'> & {
  readonly rateLimit?: KeyRateLimit | null;
  readonly uses?: number | null;
};

/**
 * What `keys update` may change in place: the whole new value of each field. `rateLimit`
 * (null: none) and `uses`, the lineage's credits from now on (null: unlimited), are left
 * unchanged when left out.
 */
export type KeyUpdate = Pick<KeyRecord, 'role' | 'scopes' | 'expiresAt'> & { readonly rateLimit?: KeyRateLimit | null; readonly uses?: number | null };

export interface MigrationResult {
  /** Names (`001_initial`) of the migrations this call applied, in order. */
  readonly applied: readonly string[];
  /** Every migration now recorded in `schema_migrations`. */
  readonly current: readonly string[];
}

/** Filter of `listKeys`. */
export interface KeyFilter {
  readonly subject?: string | undefined;
}

export type StoreKind = 'postgres' | 'sqlite';

/**
 * What verifying an API key needs of the store: the two lookups and the `last used`
 * write-back. The authenticator is handed only this.
 */
export interface KeyRepository {
  getKey(id: string): Promise<KeyRecord | undefined>;
  /** Legacy lookup by the lowercase hex SHA-256 of the whole key. */
  getKeyBySha256(sha256: string): Promise<KeyRecord | undefined>;
  /** Records `last used` times, one statement for the whole batch. */
  touchLastUsed(entries: ReadonlyMap<string, number>): Promise<void>;
  /**
   * Spends usage credits, atomically per lineage: `wanted` maps lineages to how many
   * requests want one. Resolves to how many each got (at most what is left; all of them
   * for a lineage without credits, which is unlimited). One transaction for the batch.
   */
  spendUses(wanted: ReadonlyMap<string, number>): Promise<Map<string, number>>;
}

/** The durable record of revocations: what the revocation view loads and catches up from. */
export interface RevocationLog {
  /** Keys revoked at or after `since` (catch-up after a lost notification connection). */
  listRevokedKeysSince(since: number): Promise<RevokedKey[]>;
  /** Revoked keys that would still be working otherwise (`expiresAt` null or > now). */
  listActiveRevokedKeys(now: number): Promise<RevokedKey[]>;
  /**
   * Records a JWT revocation (upsert on issuer+id; a longer or unbounded `until` wins).
   * Notifies.
   */
  insertTokenRevocation(rev: TokenRevocation): Promise<void>;
  /** Token revocations still in force at `now` (`until` null or > now). */
  listActiveTokenRevocations(now: number): Promise<TokenRevocation[]>;
  /** Token revocations written at or after `since` (catch-up). */
  listTokenRevocationsSince(since: number): Promise<TokenRevocation[]>;
  /** Deletes token revocations whose `until` has passed; resolves to how many. */
  pruneTokenRevocations(now: number): Promise<number>;
  /**
   * Records a subject-wide revocation (upsert on subject+scope; `revokedBefore` only
   * moves forward). Notifies.
   */
  insertSubjectRevocation(rev: Omit<SubjectRevocation, 'updatedAt'> & { readonly at: number }): Promise<void>;
  /** Every subject revocation (they do not expire). */
  listSubjectRevocations(): Promise<SubjectRevocation[]>;
  /** Subject revocations written at or after `since` (catch-up). */
  listSubjectRevocationsSince(since: number): Promise<SubjectRevocation[]>;
  /** The subject's revocations (one per scope at most). */
  getSubjectRevocations(subject: string): Promise<SubjectRevocation[]>;
}

/** Small persistent values shared by every instance (e.g. a generated signing key). */
export interface KvStore {
  getKv(name: string): Promise<string | undefined>;
  setKv(name: string, value: string, at: number): Promise<void>;
  /**
   * Stores `value` unless `name` already has one; resolves to the value now stored.
   * Lets several instances agree on one generated value (e.g. a signing key).
   */
  setKvIfAbsent(name: string, value: string, at: number): Promise<string>;
}

/**
 * The whole store, as the composition root and the key administration hold it. Callers
 * that need less take {@link KeyRepository}, {@link RevocationLog} or {@link KvStore}.
 */
export interface KeyStore extends KeyRepository, RevocationLog, KvStore {
  readonly kind: StoreKind;

  /**
   * Applies pending migrations in order, each in its own transaction, recorded in
   * `schema_migrations`. Idempotent; safe when several processes call it at once.
   */
  migrate(): Promise<MigrationResult>;

  /** A trivial round trip, for readiness checks. Rejects when the store is unreachable. */
  ping(): Promise<void>;

  // ---- keys -----------------------------------------------------------------------

  /** Inserts one key. Rejects on a duplicate id or legacy digest. */
  insertKey(key: NewKey): Promise<void>;
  /** Inserts keys atomically: all of them or (on any error) none. */
  insertKeys(keys: readonly NewKey[]): Promise<void>;
  /** Which of these legacy digests are already stored. */
  existingSha256(digests: readonly string[]): Promise<string[]>;
  /** Keys ordered by creation time (oldest first). */
  listKeys(filter?: KeyFilter): Promise<KeyRecord[]>;

  /**
   * Revokes one key at `at` unless it is already revoked; notifies. Resolves to the key
   * as stored afterwards (undefined when no such key), with `changed` telling whether
   * this call revoked it.
   */
  revokeKey(id: string, at: number): Promise<{ key: KeyRecord; changed: boolean } | undefined>;
  /**
   * Revokes every not-yet-revoked key of `subject` (only those named `name` when given,
   * never `exceptId`). Without `name` it also records a subject-wide revocation of scope
   * `keys` at `at`, which stops the subject's refresh tokens too. Notifies; resolves to
   * the keys it revoked.
   */
  revokeSubjectKeys(subject: string, at: number, opts?: { name?: string | null; exceptId?: string }): Promise<RevokedKey[]>;
  /**
   * Sets a working key's grants and expiry (same id, same secret). Resolves to the key as
   * stored afterwards; undefined when there is no such key or it is revoked or rotated.
   */
  updateKey(id: string, fields: KeyUpdate): Promise<KeyRecord | undefined>;
  /**
   * Revokes every not-yet-revoked key named `name` (of `subject` only, when given).
   * Notifies; resolves to the keys it revoked.
   */
  revokeNamedKeys(name: string, at: number, subject?: string): Promise<RevokedKey[]>;
  /**
   * Inserts `successor` and marks `oldId` rotated: `successor_id` set, working until
   * `graceUntil`, its refresh token (if any) spent at `at`. With `graceUntil <= at` the old
   * key is revoked outright (and notified).
   * Atomic; rejects with StoreError `conflict` if the old key is missing, revoked or
   * already rotated.
   */
  rotateKey(oldId: string, successor: NewKey, at: number, graceUntil: number): Promise<void>;
  /**
   * Spends the refresh token of `oldId` and replaces the key by `successor` (same family):
   * the old key is revoked at `at`. Atomic; resolves false (and changes nothing) when the
   * token was already spent or the key revoked meanwhile.
   */
  refreshKey(oldId: string, successor: NewKey, at: number): Promise<boolean>;
  /** Revokes every key of a refresh family (a spent token was replayed). Notifies. */
  revokeFamily(familyId: string, at: number): Promise<RevokedKey[]>;

  // ---- notifications -------------------------------------------------------------------

  /**
   * Subscribes to a notification channel (PostgreSQL LISTEN on a dedicated connection that
   * reconnects by itself; SQLite: a poll of the notices table, which every process on the
   * file writes to). Resolves to an unsubscribe function.
   */
  listen(channel: string, handlers: ListenHandlers): Promise<() => Promise<void>>;
  /** Sends a notification (PostgreSQL NOTIFY; SQLite: a row in the notices table). */
  notify(channel: string, payload: string): Promise<void>;

  /** Closes pools / the embedded database. */
  close(): Promise<void>;
}
