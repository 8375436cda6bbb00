import { chmodSync, existsSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DatabaseSync, type SQLInputValue, type StatementSync } from 'node:sqlite';
import { StoreError } from './errors.js';
import type { MigrationConn } from './migrate.js';
import type { Row } from './rows.js';
import type { Sql, SqlDriver } from './driver.js';
import { SqlKeyStore } from './sql.js';
import { sqliteStatements } from './statements.js';
import type { KeyStore, ListenHandlers } from './types.js';

/** Options of {@link openSqliteStore}. */
export interface SqliteStoreOptions {
  /** How often subscribers poll the notices table (default 200 ms: well within SPEC §7's 1 s). */
  pollIntervalMs?: number;
  /** How long a statement waits for another process's write lock before failing (default 5 s). */
  busyTimeoutMs?: number;
  /** Notices older than this are pruned (default 10 minutes). */
  noticeRetentionMs?: number;
}

// SQLite waits this long for a lock synchronously (blocking the event loop) before the
// driver takes over and retries asynchronously, so a long import in the CLI never stalls
// a gateway's requests for more than a few milliseconds.
const SYNC_BUSY_MS = 10;
const SQLITE_BUSY = 5;
const SQLITE_LOCKED = 6;

/** Ends a transaction SQLite may already have rolled back by itself (after some errors it does). */
function rollback(db: DatabaseSync): void {
  try {
    db.exec('ROLLBACK');
  } catch {
    // no transaction was open any more
  }
}

function isBusy(err: unknown): boolean {
  const code = (err as { errcode?: unknown } | null)?.errcode;
  return typeof code === 'number' && ((code & 0xff) === SQLITE_BUSY || (code & 0xff) === SQLITE_LOCKED);
}

/** Times as milliseconds, lists as JSON, booleans as 0/1: what the SQLite schema stores. */
function bind(v: unknown): SQLInputValue {
  if (v === undefined || v === null) return null;
  if (v instanceof Date) return v.getTime();
  if (Array.isArray(v)) return JSON.stringify(v);
  if (typeof v === 'boolean') return v ? 1 : 0;
  return v as SQLInputValue;
}

interface Subscription {
  readonly channel: string;
  readonly handlers: ListenHandlers;
  cursor: number;
}

class SqliteDriver implements SqlDriver {
  readonly kind = 'sqlite' as const;
  readonly statements = sqliteStatements;
  readonly #db: DatabaseSync;
  /** On a file (not in memory): commits are synced (synchronous = FULL). */
  readonly #file: boolean;
  readonly #prepared = new Map<string, StatementSync>();
  readonly #busyTimeout: number;
  readonly #pollMs: number;
  readonly #retention: number;
  readonly #subs = new Set<Subscription>();
  /** Settles when the transaction holding the connection ends; statements outside it wait. */
  #exclusive: Promise<unknown> = Promise.resolve();
  #inTransaction = false;
  #poller: NodeJS.Timeout | undefined;
  #lastPrune = 0;

  constructor(db: DatabaseSync, file: boolean, opts: SqliteStoreOptions) {
    this.#db = db;
    this.#file = file;
    this.#busyTimeout = opts.busyTimeoutMs ?? 5_000;
    this.#pollMs = opts.pollIntervalMs ?? 200;
    this.#retention = opts.noticeRetentionMs ?? 600_000;
  }

  #statement(text: string): StatementSync {
    let st = this.#prepared.get(text);
    if (st === undefined) {
      // `$n` is a named parameter to SQLite (numbered by first appearance); `?n` is position n.
      st = this.#db.prepare(text.replace(/\$(\d+)/g, '?$1'));
      this.#prepared.set(text, st);
    }
    return st;
  }

  #run<T>(text: string, params?: readonly unknown[]): T[] {
    const st = this.#statement(text);
    return (params === undefined ? st.all() : st.all(...params.map(bind))) as T[];
  }

  /** Runs `fn`, retrying it asynchronously while another process holds the lock it needs. */
  async #patiently<T>(fn: () => T): Promise<T> {
    const deadline = performance.now() + this.#busyTimeout;
    for (let wait = 2; ; wait = Math.min(wait * 2, 50)) {
      try {
        return fn();
      } catch (err) {
        if (!isBusy(err) || performance.now() >= deadline) throw err;
      }
      await sleep(wait);
    }
  }

  async query<T = Row>(text: string, params?: readonly unknown[]): Promise<T[]> {
    while (this.#inTransaction) await this.#exclusive.catch(() => undefined);
    return this.#patiently(() => this.#run<T>(text, params));
  }

  async queryUnsynced<T = Row>(text: string, params?: readonly unknown[]): Promise<T[]> {
    while (this.#inTransaction) await this.#exclusive.catch(() => undefined);
    return this.#patiently(() => {
      // Per connection and outside a transaction: only this statement commits without fsync.
      this.#db.exec('PRAGMA synchronous = NORMAL');
      try {
        return this.#run<T>(text, params);
      } finally {
        if (this.#file) this.#db.exec('PRAGMA synchronous = FULL');
      }
    });
  }

  /**
   * Serializes transactions on the one connection and keeps other statements out of them
   * once BEGIN IMMEDIATE has the write lock (not while waiting for it: reads go on then).
   */
  #hold<T>(body: () => Promise<T>): Promise<T> {
    const run = this.#exclusive.catch(() => undefined).then(async () => {
      await this.#patiently(() => {
        this.#db.exec('BEGIN IMMEDIATE');
        this.#inTransaction = true;
      });
      try {
        return await body();
      } finally {
        this.#inTransaction = false;
      }
    });
    this.#exclusive = run;
    return run;
  }

  #sql(): Sql {
    return { query: async <R = Row>(text: string, params?: readonly unknown[]) => this.#run<R>(text, params) };
  }

  transaction<T>(fn: (tx: Sql) => Promise<T>): Promise<T> {
    // IMMEDIATE takes the write lock up front: a deferred transaction that reads first
    // could not upgrade later if another process wrote meanwhile.
    return this.#hold(async () => {
      try {
        const out = await fn(this.#sql());
        this.#db.exec('COMMIT');
        return out;
      } catch (err) {
        rollback(this.#db);
        throw err;
      }
    });
  }

  // The write lock of BEGIN IMMEDIATE excludes every other process for the whole run; each
  // migration is a savepoint inside it, kept when it applies, undone when it fails.
  withMigrationLock<T>(fn: (conn: MigrationConn) => Promise<T>): Promise<T> {
    return this.#hold(async () => {
      const conn: MigrationConn = {
        dialect: 'sqlite',
        query: async (text, params) => this.#run(text, params),
        transaction: async (body) => {
          this.#db.exec('SAVEPOINT migration');
          try {
            const out = await body({ query: conn.query, exec: async (script) => this.#db.exec(script) });
            this.#db.exec('RELEASE migration');
            return out;
          } catch (err) {
            this.#db.exec('ROLLBACK TO migration');
            this.#db.exec('RELEASE migration');
            throw err;
          }
        },
      };
      try {
        const out = await fn(conn);
        this.#db.exec('COMMIT');
        return out;
      } catch (err) {
        // What applied is kept, as PostgreSQL keeps each migration's own transaction.
        try {
          this.#db.exec('COMMIT');
        } catch {
          rollback(this.#db);
        }
        throw err;
      }
    });
  }

  async listen(channel: string, handlers: ListenHandlers): Promise<() => Promise<void>> {
    const [row] = await this.query<{ seq: number | null }>('SELECT max(seq) AS seq FROM notices');
    const sub: Subscription = { channel, handlers, cursor: row?.seq ?? 0 };
    this.#subs.add(sub);
    if (this.#poller === undefined) {
      this.#poller = setInterval(() => void this.#poll(), this.#pollMs);
      this.#poller.unref();
    }
    return async () => {
      this.#subs.delete(sub);
      if (this.#subs.size === 0) this.#stopPolling();
    };
  }

  async #poll(): Promise<void> {
    for (const sub of this.#subs) {
      let rows: Array<{ seq: number; channel: string; payload: string }>;
      try {
        rows = await this.query('SELECT seq, channel, payload FROM notices WHERE seq > $1 ORDER BY seq', [sub.cursor]);
      } catch (err) {
        sub.handlers.onError?.(err as Error);
        continue;
      }
      if (rows.length === 0) continue;
      // seq never goes back and has no holes but pruned rows: a hole means missed notices.
      if (rows[0]!.seq !== sub.cursor + 1) sub.handlers.onReconnect?.();
      sub.cursor = rows[rows.length - 1]!.seq;
      for (const r of rows) if (r.channel === sub.channel) sub.handlers.onMessage(r.payload);
    }
    const now = Date.now();
    if (now - this.#lastPrune > 60_000) {
      this.#lastPrune = now;
      await this.queryUnsynced('DELETE FROM notices WHERE at < $1', [now - this.#retention]).catch(() => undefined);
    }
  }

  #stopPolling(): void {
    if (this.#poller !== undefined) clearInterval(this.#poller);
    this.#poller = undefined;
  }

  async close(): Promise<void> {
    this.#stopPolling();
    this.#subs.clear();
    await this.#exclusive.catch(() => undefined);
    this.#db.close();
  }
}

/**
 * Opens an embedded SQLite store (`node:sqlite`): `file` undefined keeps it in memory;
 * otherwise the file (and its directory) is created if needed, readable by this user only.
 * The file is in WAL mode, so gateways, workers and the CLI share it: readers never wait
 * for a writer, and writers take turns.
 */
export async function openSqliteStore(file: string | undefined, opts: SqliteStoreOptions = {}): Promise<KeyStore> {
  let db: DatabaseSync;
  try {
    if (file !== undefined) mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    const created = file !== undefined && !existsSync(file);
    db = new DatabaseSync(file ?? ':memory:');
    if (created) chmodSync(file, 0o600);
  } catch (err) {
    throw new StoreError('store-unavailable', `cannot open the SQLite file ${file ?? ':memory:'}: ${(err as Error).message}`, { cause: err });
  }
  const deadline = performance.now() + (opts.busyTimeoutMs ?? 5_000);
  try {
    db.exec(`PRAGMA busy_timeout = ${SYNC_BUSY_MS}`);
    for (let wait = 2; ; wait = Math.min(wait * 2, 50)) {
      try {
        // Switching to WAL needs the lock for a moment: another process may be opening the file too.
        if (file !== undefined) db.exec('PRAGMA journal_mode = WAL');
        break;
      } catch (err) {
        if (!isBusy(err) || performance.now() >= deadline) throw err;
      }
      await sleep(wait);
    }
    // FULL: a commit is on disk when it returns, revocations included.
    if (file !== undefined) db.exec('PRAGMA synchronous = FULL');
    db.exec('PRAGMA foreign_keys = ON');
  } catch (err) {
    db.close();
    throw new StoreError('store-unavailable', `cannot prepare the SQLite file ${file}: ${(err as Error).message}`, { cause: err });
  }
  return new SqlKeyStore(new SqliteDriver(db, file !== undefined, opts));
}
