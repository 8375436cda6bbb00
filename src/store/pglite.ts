import { mkdirSync } from 'node:fs';
import { PGlite } from '@electric-sql/pglite';
import { StoreError } from './errors.js';
import { lockDataDir } from './lock.js';
import type { MigrationConn } from './migrate.js';
import { SqlKeyStore, type Row, type Sql, type SqlDriver } from './sql.js';
import type { KeyStore, ListenHandlers } from './types.js';

class PgliteDriver implements SqlDriver {
  readonly kind = 'pglite' as const;
  readonly #db: PGlite;
  readonly #release: (() => void) | undefined;

  constructor(db: PGlite, release: (() => void) | undefined) {
    this.#db = db;
    this.#release = release;
  }

  async query<T = Row>(text: string, params?: readonly unknown[]): Promise<T[]> {
    const res = await this.#db.query<T>(text, params as unknown[] | undefined);
    return res.rows;
  }

  async transaction<T>(fn: (tx: Sql) => Promise<T>): Promise<T> {
    return this.#db.transaction((tx) =>
      fn({
        async query<R = Row>(text: string, params?: readonly unknown[]): Promise<R[]> {
          return (await tx.query<R>(text, params as unknown[] | undefined)).rows;
        },
      }),
    );
  }

  // One process owns the directory (lock file) and PGlite runs one statement at a time,
  // so per-migration transactions are all the exclusion needed.
  async withMigrationLock<T>(fn: (conn: MigrationConn) => Promise<T>): Promise<T> {
    return fn({
      query: (text, params) => this.query(text, params),
      transaction: (body) =>
        this.#db.transaction((tx) =>
          body({
            query: async <R>(text: string, params?: readonly unknown[]) => (await tx.query<R>(text, params as unknown[] | undefined)).rows,
            exec: async (script: string) => {
              await tx.exec(script);
            },
          }),
        ),
    });
  }

  async listen(channel: string, handlers: ListenHandlers): Promise<() => Promise<void>> {
    const unlisten = await this.#db.listen(channel, (payload) => handlers.onMessage(payload));
    return async () => {
      if (!this.#db.closed) await unlisten();
    };
  }

  async close(): Promise<void> {
    try {
      if (!this.#db.closed) await this.#db.close();
    } finally {
      this.#release?.();
    }
  }
}

/**
 * Opens an embedded PGlite store: `dir` undefined keeps it in memory, otherwise the data
 * directory is created if needed and locked for this process (StoreError `store-locked`
 * when another live process has it open).
 */
export async function openPgliteStore(dir: string | undefined): Promise<KeyStore> {
  if (dir === undefined) {
    const db = await PGlite.create();
    return new SqlKeyStore(new PgliteDriver(db, undefined));
  }
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new StoreError('store-unavailable', `cannot create the data directory ${dir}: ${(err as Error).message}`, { cause: err });
  }
  const release = lockDataDir(dir);
  try {
    const db = await PGlite.create({ dataDir: dir });
    return new SqlKeyStore(new PgliteDriver(db, release));
  } catch (err) {
    release();
    throw new StoreError('store-unavailable', `cannot open the PGlite data directory ${dir}: ${(err as Error).message}`, { cause: err });
  }
}
