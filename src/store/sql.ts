import { keyRevocationId } from '../revocation/ids.js';
import { StoreError } from './errors.js';
import { mapDbError, notice } from './driver.js';
import { SqlLogStore } from './sql-log.js';

import { setUses, spendUses } from './uses.js';
import { date, EFFECTIVE_END, INSERT_KEY, keyParams, REVOKED_COLUMNS, SELECT_KEYS, toKey, toRevoked } from './rows.js';
import {
  lineageOf,
  type KeyFilter,
  type KeyRecord,
  type KeyStore,
  type KeyUpdate,
  type NewKey,
  type RevocationNotice,
  type RevokedKey,
} from './types.js';

function keyNotice(k: RevokedKey, at: number): RevocationNotice {
  return { kind: 'key', id: k.id, revocationId: k.revocationId, subject: k.subject, at, expiresAt: k.expiresAt };
}

/** The KeyStore over any SQL driver: PostgreSQL or SQLite, with the driver's {@link Statements}. */
export class SqlKeyStore extends SqlLogStore implements KeyStore {
  async insertKey(key: NewKey): Promise<void> {
    if (key.uses === undefined || key.uses === null) {
      await this.q(INSERT_KEY, keyParams(key));
      return;
    }
    const uses = key.uses;
    await this.tx(async (tx) => {
      await tx.query(INSERT_KEY, keyParams(key));
      await setUses(tx, lineageOf(key), uses);
    });
  }

  async insertKeys(keys: readonly NewKey[]): Promise<void> {
    if (keys.length === 0) return;
    await this.tx(async (tx) => {
      for (const k of keys) {
        await tx.query(INSERT_KEY, keyParams(k));
        if (k.uses !== undefined && k.uses !== null) await setUses(tx, lineageOf(k), k.uses);
      }
      await notice(tx, this.sql, { kind: 'added', count: keys.length });
    });
  }

  async getKey(id: string): Promise<KeyRecord | undefined> {
    const rows = await this.q(`${SELECT_KEYS} WHERE k.id = $1`, [id]);
    return rows[0] === undefined ? undefined : toKey(rows[0]);
  }

  async getKeyBySha256(sha256: string): Promise<KeyRecord | undefined> {
    const rows = await this.q(`${SELECT_KEYS} WHERE k.sha256 = $1`, [sha256]);
    return rows[0] === undefined ? undefined : toKey(rows[0]);
  }

  async existingSha256(digests: readonly string[]): Promise<string[]> {
    if (digests.length === 0) return [];
    const rows = await this.q<{ sha256: string }>(this.sql.existingSha256, [[...digests]]);
    return rows.map((r) => r.sha256);
  }

  async listKeys(filter?: KeyFilter): Promise<KeyRecord[]> {
    const rows =
      filter?.subject === undefined
        ? await this.q(`${SELECT_KEYS} ORDER BY k.created_at, k.id`)
        : await this.q(`${SELECT_KEYS} WHERE k.subject = $1 ORDER BY k.created_at, k.id`, [filter.subject]);
    return rows.map(toKey);
  }

  async revokeKey(id: string, at: number): Promise<{ key: KeyRecord; changed: boolean } | undefined> {
    return this.tx(async (tx) => {
      const updated = await tx.query('UPDATE keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING *', [id, date(at)]);
      if (updated[0] !== undefined) {
        const key = toKey(updated[0]);
        const end = key.successorId !== null ? key.graceUntil : key.expiresAt;
        await notice(tx, this.sql, { kind: 'key', id: key.id, revocationId: keyRevocationId(key), subject: key.subject, at, expiresAt: end });
        return { key, changed: true };
      }
      const rows = await tx.query('SELECT * FROM keys WHERE id = $1', [id]);
      return rows[0] === undefined ? undefined : { key: toKey(rows[0]), changed: false };
    });
  }

  async revokeSubjectKeys(subject: string, at: number, opts?: { name?: string | null; exceptId?: string }): Promise<RevokedKey[]> {
    const byName = opts !== undefined && 'name' in opts;
    return this.tx(async (tx) => {
      const params: unknown[] = [subject, date(at)];
      let where = 'subject = $1 AND revoked_at IS NULL';
      if (byName) {
        params.push(opts.name ?? null);
        where += ` AND ${this.sql.nameIs(params.length)}`;
      }
      if (opts?.exceptId !== undefined) {
        params.push(opts.exceptId);
        where += ` AND id <> $${params.length}`;
      }
      const rows = (await tx.query(`UPDATE keys SET revoked_at = $2 WHERE ${where} RETURNING ${REVOKED_COLUMNS}`, params)).map(toRevoked);
      if (byName) {
        for (const k of rows) await notice(tx, this.sql, keyNotice(k, at));
      } else {
        await tx.query(this.sql.upsertSubjectRevocation, [subject, 'keys', date(at), date(at)]);
        await notice(tx, this.sql, { kind: 'subject', subject, scope: 'keys', revokedBefore: at, at });
      }
      return rows;
    });
  }

  async updateKey(id: string, fields: KeyUpdate): Promise<KeyRecord | undefined> {
    // Only a working key changes: a revoked or rotated one is over, whatever it is told.
    return this.tx(async (tx) => {
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
      for (const k of changed) await notice(tx, this.sql, { kind: 'changed', id: k.id, revocationId: keyRevocationId(k), subject: k.subject });
      const [after] = await tx.query(`${SELECT_KEYS} WHERE k.id = $1`, [id]);
      return toKey(after!);
    });
  }

  async revokeNamedKeys(name: string, at: number, subject?: string): Promise<RevokedKey[]> {
    return this.tx(async (tx) => {
      const params: unknown[] = [name, date(at)];
      let where = 'name = $1 AND revoked_at IS NULL';
      if (subject !== undefined) {
        params.push(subject);
        where += ' AND subject = $3';
      }
      const rows = (await tx.query(`UPDATE keys SET revoked_at = $2 WHERE ${where} RETURNING ${REVOKED_COLUMNS}`, params)).map(toRevoked);
      for (const k of rows) await notice(tx, this.sql, keyNotice(k, at));
      return rows;
    });
  }

  async rotateKey(oldId: string, successor: NewKey, at: number, graceUntil: number): Promise<void> {
    await this.tx(async (tx) => {
      const rows = await tx.query(this.sql.keyForUpdate, [oldId]);
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
      await notice(tx, this.sql, revokeNow ? { kind: 'key', ...ref, expiresAt: graceUntil } : { kind: 'changed', ...ref });
    });
  }

  async refreshKey(oldId: string, successor: NewKey, at: number): Promise<boolean> {
    return this.tx(async (tx) => {
      const rows = await tx.query(
        `UPDATE keys SET refresh_spent_at = $2, revoked_at = $2
          WHERE id = $1 AND refresh_spent_at IS NULL AND revoked_at IS NULL RETURNING ${REVOKED_COLUMNS}`,
        [oldId, date(at)],
      );
      if (rows[0] === undefined) return false;
      await tx.query(INSERT_KEY, keyParams(successor));
      await notice(tx, this.sql, keyNotice(toRevoked(rows[0]), at));
      return true;
    });
  }

  async revokeFamily(familyId: string, at: number): Promise<RevokedKey[]> {
    return this.tx(async (tx) => {
      const rows = (
        await tx.query(
          `UPDATE keys SET revoked_at = COALESCE(revoked_at, $2), refresh_spent_at = COALESCE(refresh_spent_at, $2)
            WHERE family_id = $1 AND (revoked_at IS NULL OR refresh_spent_at IS NULL)
            RETURNING ${REVOKED_COLUMNS}, (revoked_at = $2) AS newly`,
          [familyId, date(at)],
        )
      ).filter((r) => r.newly === true || r.newly === 1);
      const revoked = rows.map(toRevoked);
      for (const k of revoked) await notice(tx, this.sql, keyNotice(k, at));
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
    if (this.closed) throw new StoreError('store-unavailable', 'key store is closed');
    try {
      await (this.db.queryUnsynced ?? this.db.query).call(this.db, this.sql.touchLastUsed, [ids, times]);
    } catch (err) {
      throw mapDbError(err);
    }
  }

  async spendUses(wanted: ReadonlyMap<string, number>): Promise<Map<string, number>> {
    if (wanted.size === 0) return new Map();
    return this.tx((tx) => spendUses(tx, this.sql, wanted));
  }

  async listRevokedKeysSince(since: number): Promise<RevokedKey[]> {
    const rows = await this.q(`SELECT ${REVOKED_COLUMNS} FROM keys WHERE revoked_at >= $1 ORDER BY revoked_at, id`, [date(since)]);
    return rows.map(toRevoked);
  }

  async listActiveRevokedKeys(now: number): Promise<RevokedKey[]> {
    const rows = await this.q(
      `SELECT ${REVOKED_COLUMNS} FROM keys
        WHERE revoked_at IS NOT NULL AND (${EFFECTIVE_END} IS NULL OR ${EFFECTIVE_END} > $1) ORDER BY revoked_at, id`,
      [date(now)],
    );
    return rows.map(toRevoked);
  }


}
