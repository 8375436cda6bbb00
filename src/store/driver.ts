import { StoreError } from './errors.js';
import type { MigrationConn } from './migrate.js';
import type { Row } from './rows.js';
import type { Statements } from './statements.js';
import { REVOCATION_CHANNEL, type ListenHandlers, type RevocationNotice, type StoreKind } from './types.js';

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


/** Announces a change inside the transaction that makes it (the channel gateways hear). */
export async function notice(tx: Sql, sql: Statements, n: RevocationNotice): Promise<void> {
  await tx.query(sql.notify, [REVOCATION_CHANNEL, JSON.stringify(n)]);
}
