import { keyRevocationId } from '../revocation/ids.js';
import { StoreError } from './errors.js';
import { runMigrations, type MigrationConn } from './migrate.js';
import type { Statements } from './statements.js';
import { setUses, spendUses } from './uses.js';
import { date, EFFECTIVE_END, INSERT_KEY, keyParams, REVOKED_COLUMNS, SELECT_KEYS, toKey, toRevoked, toSubjectRevocation, toTokenRevocation, type Row } from './rows.js';
import {
  lineageOf,
  REVOCATION_CHANNEL,
  type KeyFilter,
  type KeyRecord,
  type KeyStore,
  type KeyUpdate,
  type ListenHandlers,
  type MigrationResult,
  type NewKey,
  type RevocationNotice,
  type RevokedKey,
  type StoreKind,
  type SubjectRevocation,
  type TokenRevocation,
} from './types.js';

/** The part of a database connection the store's SQL needs. */
export interface Sql {
  query<T = Row>(text: string, params?: readonly unknown[]): Promise<T[]>;
}

/** What each backend provides; everything else is shared SQL in {@link SqlKeyStore}. */
export interface SqlDriver extends Sql {
  readonly kind: StoreKind;
  /** The statements whose SQL is the driver's dialect's own. */
  readonly statements: Statements;
  /** Runs `fn` in one transaction on one connection; rolls back when it throws. */
  transaction<T>(fn: (tx: Sql) => Promise<T>): Promise<T>;
  /**
   * A write that need not outlive a power cut (last-used times): the embedded store then
   * skips the fsync, which would hold its event loop for milliseconds. Absent: `query`.
   */
  queryUnsynced?<T = Row>(text: string, params?: readonly unknown[]): Promise<T[]>;
  /** Runs `fn` while holding the cross-process migration lock. */
  withMigrationLock<T>(fn: (conn: MigrationConn) => Promise<T>): Promise<T>;
  listen(channel: string, handlers: ListenHandlers): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

const CHANNEL_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/** Channel names are identifiers in LISTEN; only plain lowercase ones are accepted. */
export function checkChannel(channel: string): string {
  if (!CHANNEL_NAME.test(channel)) throw new StoreError('conflict', `invalid notification channel name: ${channel}`);
  return channel;
}

/**
 * Maps a driver error to a StoreError: constraint violations are `conflict` (the caller's
 * precondition failed), everything else means the database is not usable right now.
 */
export function mapDbError(err: unknown): StoreError {
  if (err instanceof StoreError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  // node:sqlite: `errcode` is SQLite's extended result code; 19 is SQLITE_CONSTRAINT.
  const errcode = (err as { errcode?: unknown } | null)?.errcode;
  if (code === '23505' || code === '23503' || code === '23514' || (typeof errcode === 'number' && (errcode & 0xff) === 19)) {
    return new StoreError('conflict', `store constraint violated: ${(err as Error).message}`, { cause: err });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new StoreError('store-unavailable', `key store error: ${message}`, { cause: err });
}

async function notice(tx: Sql, sql: Statements, n: RevocationNotice): Promise<void> {
  await tx.query(sql.notify, [REVOCATION_CHANNEL, JSON.stringify(n)]);
}

function keyNotice(k: RevokedKey, at: number): RevocationNotice {
  return { kind: 'key', id: k.id, revocationId: k.revocationId, subject: k.subject, at, expiresAt: k.expiresAt };
}

/** The KeyStore over any SQL driver: PostgreSQL or SQLite, with the driver's {@link Statements}. */
export class SqlKeyStore implements KeyStore {
  readonly kind: StoreKind;
  readonly #db: SqlDriver;
  readonly #sql: Statements;
  #closed = false;

  constructor(driver: SqlDriver) {
    this.#db = driver;
    this.#sql = driver.statements;
    this.kind = driver.kind;
  }

  async #q<T = Row>(text: string, params?: readonly unknown[]): Promise<T[]> {
    if (this.#closed) throw new StoreError('store-unavailable', 'key store is closed');
    try {
      return await this.#db.query<T>(text, params);
    } catch (err) {
      throw mapDbError(err);
    }
  }

  async #tx<T>(fn: (tx: Sql) => Promise<T>): Promise<T> {
    if (this.#closed) throw new StoreError('store-unavailable', 'key store is closed');
    try {
      return await this.#db.transaction(fn);
    } catch (err) {
      throw mapDbError(err);
    }
  }

  async migrate(): Promise<MigrationResult> {
    if (this.#closed) throw new StoreError('store-unavailable', 'key store is closed');
    try {
      return await this.#db.withMigrationLock((conn) => runMigrations(conn));
    } catch (err) {
      throw mapDbError(err);
    }
  }

  async ping(): Promise<void> {
    await this.#q('SELECT 1 AS ok');
  }

  async insertKey(key: NewKey): Promise<void> {
    if (key.uses === undefined || key.uses === null) {
      await this.#q(INSERT_KEY, keyParams(key));
      return;
    }
    const uses = key.uses;
    await this.#tx(async (tx) => {
      await tx.query(INSERT_KEY, keyParams(key));
      await setUses(tx, lineageOf(key), uses);
    });
  }

  async insertKeys(keys: readonly NewKey[]): Promise<void> {
    if (keys.length === 0) return;
    await this.#tx(async (tx) => {
      for (const k of keys) {
        await tx.query(INSERT_KEY, keyParams(k));
        if (k.uses !== undefined && k.uses !== null) await setUses(tx, lineageOf(k), k.uses);
      }
      await notice(tx, this.#sql, { kind: 'added', count: keys.length });
    });
  }

  async getKey(id: string): Promise<KeyRecord | undefined> {
    const rows = await this.#q(`${SELECT_KEYS} WHERE k.id = $1`, [id]);
    return rows[0] === undefined ? undefined : toKey(rows[0]);
  }

  async getKeyBySha256(sha256: string): Promise<KeyRecord | undefined> {
    const rows = await this.#q(`${SELECT_KEYS} WHERE k.sha256 = $1`, [sha256]);
    return rows[0] === undefined ? undefined : toKey(rows[0]);
  }

  async existingSha256(digests: readonly string[]): Promise<string[]> {
    if (digests.length === 0) return [];
    const rows = await this.#q<{ sha256: string }>(this.#sql.existingSha256, [[...digests]]);
    return rows.map((r) => r.sha256);
  }

  async listKeys(filter?: KeyFilter): Promise<KeyRecord[]> {
    const rows =
      filter?.subject === undefined
        ? await this.#q(`${SELECT_KEYS} ORDER BY k.created_at, k.id`)
        : await this.#q(`${SELECT_KEYS} WHERE k.subject = $1 ORDER BY k.created_at, k.id`, [filter.subject]);
    return rows.map(toKey);
  }

  async revokeKey(id: string, at: number): Promise<{ key: KeyRecord; changed: boolean } | undefined> {
    return this.#tx(async (tx) => {
      const updated = await tx.query('UPDATE keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING *', [id, date(at)]);
      if (updated[0] !== undefined) {
        const key = toKey(updated[0]);
        const end = key.successorId !== null ? key.graceUntil : key.expiresAt;
        await notice(tx, this.#sql, { kind: 'key', id: key.id, revocationId: keyRevocationId(key), subject: key.subject, at, expiresAt: end });
        return { key, changed: true };
      }
      const rows = await tx.query('SELECT * FROM keys WHERE id = $1', [id]);
      return rows[0] === undefined ? undefined : { key: toKey(rows[0]), changed: false };
    });
  }

  async revokeSubjectKeys(subject: string, at: number, opts?: { name?: string | null; exceptId?: string }): Promise<RevokedKey[]> {
    const byName = opts !== undefined && 'name' in opts;
    return this.#tx(async (tx) => {
      const params: unknown[] = [subject, date(at)];
      let where = 'subject = $1 AND revoked_at IS NULL';
      if (byName) {
        params.push(opts.name ?? null);
        where += ` AND ${this.#sql.nameIs(params.length)}`;
      }
      if (opts?.exceptId !== undefined) {
        params.push(opts.exceptId);
        where += ` AND id <> $${params.length}`;
      }
      const rows = (await tx.query(`UPDATE keys SET revoked_at = $2 WHERE ${where} RETURNING ${REVOKED_COLUMNS}`, params)).map(toRevoked);
      if (byName) {
        for (const k of rows) await notice(tx, this.#sql, keyNotice(k, at));
      } else {
        await tx.query(this.#sql.upsertSubjectRevocation, [subject, 'keys', date(at), date(at)]);
        await notice(tx, this.#sql, { kind: 'subject', subject, scope: 'keys', revokedBefore: at, at });
      }
      return rows;
    });
  }

  async updateKey(id: string, fields: KeyUpdate): Promise<KeyRecord | undefined> {
    // Only a working key changes: a revoked or rotated one is over, whatever it is told.
    return this.#tx(async (tx) => {
      const params: unknown[] = [id, fields.role, [...fields.scopes], date(fields.expiresAt)];
      let rate = '';
      if (fields.rateLimit !== undefined) {
        params.push(fields.rateLimit?.limit ?? null, fields.rateLimit?.window ?? null);
        rate = ', rate_limit = $5, rate_window = $6';
      }
      const rows = await tx.query(
        `UPDATE keys SET role = $2, scopes = $3, expires_at = $4${rate} WHERE id = $1 AND revoked_at IS NULL AND successor_id IS NULL RETURNING *`,
        params,
      );
      if (rows[0] === undefined) return undefined;
      let changed = [toKey(rows[0])];
      if (fields.uses !== undefined) {
        const lineage = lineageOf(changed[0]!);
        await setUses(tx, lineage, fields.uses);
        // Every working key of the lineage (a rotated one in its grace too) counts from now on.
        const more = await tx.query(`SELECT * FROM keys WHERE (family_id = $1 OR id = $1) AND id <> $2 AND revoked_at IS NULL`, [lineage, id]);
        changed = changed.concat(more.map(toKey));
      }
      // Processes without a server between them (the embedded file) learn of it from this.
      for (const k of changed) await notice(tx, this.#sql, { kind: 'changed', id: k.id, revocationId: keyRevocationId(k), subject: k.subject });
      const [after] = await tx.query(`${SELECT_KEYS} WHERE k.id = $1`, [id]);
      return toKey(after!);
    });
  }

  async revokeNamedKeys(name: string, at: number, subject?: string): Promise<RevokedKey[]> {
    return this.#tx(async (tx) => {
      const params: unknown[] = [name, date(at)];
      let where = 'name = $1 AND revoked_at IS NULL';
      if (subject !== undefined) {
        params.push(subject);
        where += ' AND subject = $3';
      }
      const rows = (await tx.query(`UPDATE keys SET revoked_at = $2 WHERE ${where} RETURNING ${REVOKED_COLUMNS}`, params)).map(toRevoked);
      for (const k of rows) await notice(tx, this.#sql, keyNotice(k, at));
      return rows;
    });
  }

  async rotateKey(oldId: string, successor: NewKey, at: number, graceUntil: number): Promise<void> {
    await this.#tx(async (tx) => {
      const rows = await tx.query(this.#sql.keyForUpdate, [oldId]);
      const old = rows[0] === undefined ? undefined : toKey(rows[0]);
      if (old === undefined) throw new StoreError('conflict', `no key with id ${oldId}`);
      if (old.revokedAt !== null) throw new StoreError('conflict', `key ${oldId} is revoked`);
      if (old.successorId !== null) throw new StoreError('conflict', `key ${oldId} was already rotated (successor ${old.successorId})`);
      await tx.query(INSERT_KEY, keyParams(successor));
      const revokeNow = graceUntil <= at;
      // A rotated key never mints a key: its refresh token is spent with the rotation.
      await tx.query(
        `UPDATE keys SET successor_id = $2, grace_until = $3, revoked_at = $4,
           refresh_spent_at = CASE WHEN refresh_hash IS NULL THEN refresh_spent_at ELSE COALESCE(refresh_spent_at, $5) END
         WHERE id = $1`,
        [oldId, successor.id, date(graceUntil), revokeNow ? date(at) : null, date(at)],
      );
      const ref = { id: old.id, revocationId: keyRevocationId(old), subject: old.subject, at };
      await notice(tx, this.#sql, revokeNow ? { kind: 'key', ...ref, expiresAt: graceUntil } : { kind: 'changed', ...ref });
    });
  }

  async refreshKey(oldId: string, successor: NewKey, at: number): Promise<boolean> {
    return this.#tx(async (tx) => {
      const rows = await tx.query(
        `UPDATE keys SET refresh_spent_at = $2, revoked_at = $2
          WHERE id = $1 AND refresh_spent_at IS NULL AND revoked_at IS NULL RETURNING ${REVOKED_COLUMNS}`,
        [oldId, date(at)],
      );
      if (rows[0] === undefined) return false;
      await tx.query(INSERT_KEY, keyParams(successor));
      await notice(tx, this.#sql, keyNotice(toRevoked(rows[0]), at));
      return true;
    });
  }

  async revokeFamily(familyId: string, at: number): Promise<RevokedKey[]> {
    return this.#tx(async (tx) => {
      const rows = (
        await tx.query(
          `UPDATE keys SET revoked_at = COALESCE(revoked_at, $2), refresh_spent_at = COALESCE(refresh_spent_at, $2)
            WHERE family_id = $1 AND (revoked_at IS NULL OR refresh_spent_at IS NULL)
            RETURNING ${REVOKED_COLUMNS}, (revoked_at = $2) AS newly`,
          [familyId, date(at)],
        )
      ).filter((r) => r.newly === true || r.newly === 1);
      const revoked = rows.map(toRevoked);
      for (const k of revoked) await notice(tx, this.#sql, keyNotice(k, at));
      return revoked;
    });
  }

  async touchLastUsed(entries: ReadonlyMap<string, number>): Promise<void> {
    if (entries.size === 0) return;
    const ids: string[] = [];
    const times: number[] = [];
    for (const [id, at] of entries) {
      ids.push(id);
      times.push(at);
    }
    if (this.#closed) throw new StoreError('store-unavailable', 'key store is closed');
    try {
      await (this.#db.queryUnsynced ?? this.#db.query).call(this.#db, this.#sql.touchLastUsed, [ids, times]);
    } catch (err) {
      throw mapDbError(err);
    }
  }

  async spendUses(wanted: ReadonlyMap<string, number>): Promise<Map<string, number>> {
    if (wanted.size === 0) return new Map();
    return this.#tx((tx) => spendUses(tx, this.#sql, wanted));
  }

  async listRevokedKeysSince(since: number): Promise<RevokedKey[]> {
    const rows = await this.#q(`SELECT ${REVOKED_COLUMNS} FROM keys WHERE revoked_at >= $1 ORDER BY revoked_at, id`, [date(since)]);
    return rows.map(toRevoked);
  }

  async listActiveRevokedKeys(now: number): Promise<RevokedKey[]> {
    const rows = await this.#q(
      `SELECT ${REVOKED_COLUMNS} FROM keys
        WHERE revoked_at IS NOT NULL AND (${EFFECTIVE_END} IS NULL OR ${EFFECTIVE_END} > $1) ORDER BY revoked_at, id`,
      [date(now)],
    );
    return rows.map(toRevoked);
  }

  async insertTokenRevocation(rev: TokenRevocation): Promise<void> {
    await this.#tx(async (tx) => {
      await tx.query(this.#sql.upsertTokenRevocation, [rev.id, rev.issuer, date(rev.until), date(rev.createdAt)]);
      await notice(tx, this.#sql, { kind: 'token', id: rev.id, issuer: rev.issuer, until: rev.until, at: rev.createdAt });
    });
  }

  async listActiveTokenRevocations(now: number): Promise<TokenRevocation[]> {
    const rows = await this.#q('SELECT * FROM token_revocations WHERE until IS NULL OR until > $1 ORDER BY created_at, issuer, id', [date(now)]);
    return rows.map(toTokenRevocation);
  }

  async listTokenRevocationsSince(since: number): Promise<TokenRevocation[]> {
    const rows = await this.#q('SELECT * FROM token_revocations WHERE created_at >= $1 ORDER BY created_at, issuer, id', [date(since)]);
    return rows.map(toTokenRevocation);
  }

  async pruneTokenRevocations(now: number): Promise<number> {
    const rows = await this.#q('DELETE FROM token_revocations WHERE until IS NOT NULL AND until <= $1 RETURNING id', [date(now)]);
    return rows.length;
  }

  async insertSubjectRevocation(rev: Omit<SubjectRevocation, 'updatedAt'> & { readonly at: number }): Promise<void> {
    await this.#tx(async (tx) => {
      await tx.query(this.#sql.upsertSubjectRevocation, [rev.subject, rev.scope, date(rev.revokedBefore), date(rev.at)]);
      await notice(tx, this.#sql, { kind: 'subject', subject: rev.subject, scope: rev.scope, revokedBefore: rev.revokedBefore, at: rev.at });
    });
  }

  async listSubjectRevocations(): Promise<SubjectRevocation[]> {
    return (await this.#q('SELECT * FROM subject_revocations ORDER BY updated_at, subject, scope')).map(toSubjectRevocation);
  }

  async listSubjectRevocationsSince(since: number): Promise<SubjectRevocation[]> {
    const rows = await this.#q('SELECT * FROM subject_revocations WHERE updated_at >= $1 ORDER BY updated_at, subject, scope', [date(since)]);
    return rows.map(toSubjectRevocation);
  }

  async getSubjectRevocations(subject: string): Promise<SubjectRevocation[]> {
    return (await this.#q('SELECT * FROM subject_revocations WHERE subject = $1 ORDER BY scope', [subject])).map(toSubjectRevocation);
  }

  async getKv(name: string): Promise<string | undefined> {
    const rows = await this.#q<{ value: string }>('SELECT value FROM kv WHERE name = $1', [name]);
    return rows[0]?.value;
  }

  async setKv(name: string, value: string, at: number): Promise<void> {
    await this.#q(
      'INSERT INTO kv (name, value, updated_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at',
      [name, value, date(at)],
    );
  }

  async setKvIfAbsent(name: string, value: string, at: number): Promise<string> {
    const inserted = await this.#q<{ value: string }>(
      'INSERT INTO kv (name, value, updated_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING RETURNING value',
      [name, value, date(at)],
    );
    if (inserted[0] !== undefined) return inserted[0].value;
    const existing = await this.getKv(name);
    if (existing === undefined) throw new StoreError('conflict', `kv entry ${name} vanished while being set`);
    return existing;
  }

  async listen(channel: string, handlers: ListenHandlers): Promise<() => Promise<void>> {
    if (this.#closed) throw new StoreError('store-unavailable', 'key store is closed');
    try {
      return await this.#db.listen(checkChannel(channel), handlers);
    } catch (err) {
      throw mapDbError(err);
    }
  }

  async notify(channel: string, payload: string): Promise<void> {
    await this.#q(this.#sql.notify, [checkChannel(channel), payload]);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#db.close();
  }
}
