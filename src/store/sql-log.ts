import { StoreError } from './errors.js';
import { runMigrations } from './migrate.js';
import type { Statements } from './statements.js';
import { checkChannel, mapDbError, notice, type Sql, type SqlDriver } from './driver.js';
import { date, toSubjectRevocation, toTokenRevocation, type Row } from './rows.js';
import type { ListenHandlers, MigrationResult, StoreKind, SubjectRevocation, TokenRevocation } from './types.js';

/**
 * The SQL store's connection handling, migrations, revocation log (token and subject
 * revocations), small stored values and notices; {@link SqlKeyStore} adds the keys.
 */
export class SqlLogStore {
  readonly kind: StoreKind;
  protected readonly db: SqlDriver;
  protected readonly sql: Statements;
  protected closed = false;

  constructor(driver: SqlDriver) {
    this.db = driver;
    this.sql = driver.statements;
    this.kind = driver.kind;
  }

  protected async q<T = Row>(text: string, params?: readonly unknown[]): Promise<T[]> {
    if (this.closed) throw new StoreError('store-unavailable', 'key store is closed');
    try {
      return await this.db.query<T>(text, params);
    } catch (err) {
      throw mapDbError(err);
    }
  }

  protected async tx<T>(fn: (tx: Sql) => Promise<T>): Promise<T> {
    if (this.closed) throw new StoreError('store-unavailable', 'key store is closed');
    try {
      return await this.db.transaction(fn);
    } catch (err) {
      throw mapDbError(err);
    }
  }

  async migrate(): Promise<MigrationResult> {
    if (this.closed) throw new StoreError('store-unavailable', 'key store is closed');
    try {
      return await this.db.withMigrationLock((conn) => runMigrations(conn));
    } catch (err) {
      throw mapDbError(err);
    }
  }

  async ping(): Promise<void> {
    await this.q('SELECT 1 AS ok');
  }

  async insertTokenRevocation(rev: TokenRevocation): Promise<void> {
    await this.tx(async (tx) => {
      await tx.query(this.sql.upsertTokenRevocation, [rev.id, rev.issuer, date(rev.until), date(rev.createdAt)]);
      await notice(tx, this.sql, { kind: 'token', id: rev.id, issuer: rev.issuer, until: rev.until, at: rev.createdAt });
    });
  }

  async listActiveTokenRevocations(now: number): Promise<TokenRevocation[]> {
    const rows = await this.q('SELECT * FROM token_revocations WHERE until IS NULL OR until > $1 ORDER BY created_at, issuer, id', [date(now)]);
    return rows.map(toTokenRevocation);
  }

  async listTokenRevocationsSince(since: number): Promise<TokenRevocation[]> {
    const rows = await this.q('SELECT * FROM token_revocations WHERE created_at >= $1 ORDER BY created_at, issuer, id', [date(since)]);
    return rows.map(toTokenRevocation);
  }

  async pruneTokenRevocations(now: number): Promise<number> {
    const rows = await this.q('DELETE FROM token_revocations WHERE until IS NOT NULL AND until <= $1 RETURNING id', [date(now)]);
    return rows.length;
  }

  async insertSubjectRevocation(rev: Omit<SubjectRevocation, 'updatedAt'> & { readonly at: number }): Promise<void> {
    await this.tx(async (tx) => {
      await tx.query(this.sql.upsertSubjectRevocation, [rev.subject, rev.scope, date(rev.revokedBefore), date(rev.at)]);
      await notice(tx, this.sql, { kind: 'subject', subject: rev.subject, scope: rev.scope, revokedBefore: rev.revokedBefore, at: rev.at });
    });
  }

  async listSubjectRevocations(): Promise<SubjectRevocation[]> {
    return (await this.q('SELECT * FROM subject_revocations ORDER BY updated_at, subject, scope')).map(toSubjectRevocation);
  }

  async listSubjectRevocationsSince(since: number): Promise<SubjectRevocation[]> {
    const rows = await this.q('SELECT * FROM subject_revocations WHERE updated_at >= $1 ORDER BY updated_at, subject, scope', [date(since)]);
    return rows.map(toSubjectRevocation);
  }

  async getSubjectRevocations(subject: string): Promise<SubjectRevocation[]> {
    return (await this.q('SELECT * FROM subject_revocations WHERE subject = $1 ORDER BY scope', [subject])).map(toSubjectRevocation);
  }

  async getKv(name: string): Promise<string | undefined> {
    const rows = await this.q<{ value: string }>('SELECT value FROM kv WHERE name = $1', [name]);
    return rows[0]?.value;
  }

  async setKv(name: string, value: string, at: number): Promise<void> {
    await this.q(
      'INSERT INTO kv (name, value, updated_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at',
      [name, value, date(at)],
    );
  }

  async setKvIfAbsent(name: string, value: string, at: number): Promise<string> {
    const inserted = await this.q<{ value: string }>(
      'INSERT INTO kv (name, value, updated_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING RETURNING value',
      [name, value, date(at)],
    );
    if (inserted[0] !== undefined) return inserted[0].value;
    const existing = await this.getKv(name);
    if (existing === undefined) throw new StoreError('conflict', `kv entry ${name} vanished while being set`);
    return existing;
  }

  async listen(channel: string, handlers: ListenHandlers): Promise<() => Promise<void>> {
    if (this.closed) throw new StoreError('store-unavailable', 'key store is closed');
    try {
      return await this.db.listen(checkChannel(channel), handlers);
    } catch (err) {
      throw mapDbError(err);
    }
  }

  async notify(channel: string, payload: string): Promise<void> {
    await this.q(this.sql.notify, [checkChannel(channel), payload]);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.db.close();
  }
}
