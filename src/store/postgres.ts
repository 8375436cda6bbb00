import pg from 'pg';
import { StoreError } from './errors.js';
import type { MigrationConn } from './migrate.js';
import type { Row } from './rows.js';
import { mapDbError, type Sql, type SqlDriver } from './driver.js';
import { SqlKeyStore } from './sql.js';
import { postgresStatements } from './statements.js';
import type { KeyStore, ListenHandlers } from './types.js';

export interface PostgresStoreOptions {
  /** Pool size (config `store.poolSize`). */
  poolSize?: number;
  /** How long to wait for a connection before failing the operation (ms). */
  connectTimeout?: number;
  /** Upper bound on one statement (ms); a hung database fails requests instead of holding them. */
  statementTimeout?: number;
  /** Called for errors of idle pooled connections (they are otherwise dropped quietly). */
  onError?: (err: Error) => void;
}

// Two-key advisory lock: 'pcls' and 1 (migrations). Held on one session for the whole run.
const LOCK_CLASS = 0x70636c73;
const LOCK_MIGRATIONS = 1;

function clientSql(client: pg.ClientBase): Sql {
  return {
    async query<T = Row>(text: string, params?: readonly unknown[]): Promise<T[]> {
      const res = await client.query(text, params as unknown[] | undefined);
      return res.rows as T[];
    },
  };
}

async function inTransaction<T>(client: pg.ClientBase, fn: () => Promise<T>): Promise<T> {
  await client.query('BEGIN');
  try {
    const out = await fn();
    await client.query('COMMIT');
    return out;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

class PostgresDriver implements SqlDriver {
  readonly kind = 'postgres' as const;
  readonly statements = postgresStatements;
  readonly #pool: pg.Pool;
  readonly #config: pg.ClientConfig;
  readonly #listeners = new Set<() => Promise<void>>();

  constructor(url: string, opts: PostgresStoreOptions) {
    this.#config = {
      connectionString: url,
      connectionTimeoutMillis: opts.connectTimeout ?? 5_000,
      statement_timeout: opts.statementTimeout ?? 10_000,
      // statement_timeout is enforced by the server, so it cannot end a wait on a hung server
      // or a dead network path: without this a query on an open connection would wait forever.
      // The pool drops a connection whose query timed out.
      query_timeout: (opts.statementTimeout ?? 10_000) + 2_000,
      application_name: 'portcullis',
    };
    this.#pool = new pg.Pool({ ...this.#config, max: opts.poolSize ?? 10 });
    // Without a listener an idle connection's error would crash the process.
    this.#pool.on('error', (err) => opts.onError?.(err));
  }

  async query<T = Row>(text: string, params?: readonly unknown[]): Promise<T[]> {
    const res = await this.#pool.query(text, params as unknown[] | undefined);
    return res.rows as T[];
  }

  async transaction<T>(fn: (tx: Sql) => Promise<T>): Promise<T> {
    const client = await this.#pool.connect();
    let broken: Error | undefined;
    try {
      return await inTransaction(client, () => fn(clientSql(client)));
    } catch (err) {
      // A connection-level failure must not go back to the pool.
      if ((err as { code?: unknown }).code === undefined) broken = err as Error;
      throw err;
    } finally {
      client.release(broken);
    }
  }

  async withMigrationLock<T>(fn: (conn: MigrationConn) => Promise<T>): Promise<T> {
    let client: pg.PoolClient;
    try {
      client = await this.#pool.connect();
    } catch (err) {
      throw mapDbError(err);
    }
    const sql = clientSql(client);
    const conn: MigrationConn = {
      dialect: 'postgres',
      query: sql.query,
      transaction: (body) =>
        inTransaction(client, () =>
          body({
            query: sql.query,
            exec: async (script) => {
              // No parameters: the simple protocol runs a multi-statement script.
              await client.query(script);
            },
          }),
        ),
    };
    try {
      await client.query('SELECT pg_advisory_lock($1, $2)', [LOCK_CLASS, LOCK_MIGRATIONS]);
    } catch (err) {
      client.release(err as Error);
      throw mapDbError(err);
    }
    try {
      return await fn(conn);
    } finally {
      await client.query('SELECT pg_advisory_unlock($1, $2)', [LOCK_CLASS, LOCK_MIGRATIONS]).catch(() => undefined);
      client.release();
    }
  }

  async listen(channel: string, handlers: ListenHandlers): Promise<() => Promise<void>> {
    const listener = new Listener(this.#config, channel, handlers);
    await listener.start();
    const stop = async (): Promise<void> => {
      this.#listeners.delete(stop);
      await listener.stop();
    };
    this.#listeners.add(stop);
    return stop;
  }

  async close(): Promise<void> {
    await Promise.all([...this.#listeners].map((stop) => stop()));
    await this.#pool.end();
  }
}

/**
 * One dedicated connection per subscription (LISTEN is per session, pooled connections
 * are not). A lost connection is re-established with capped backoff, and `onReconnect`
 * tells the subscriber to catch up on what it may have missed.
 */
class Listener {
  readonly #config: pg.ClientConfig;
  readonly #channel: string;
  readonly #handlers: ListenHandlers;
  #client: pg.Client | undefined;
  #stopped = false;
  #timer: NodeJS.Timeout | undefined;
  #delay = 250;

  constructor(config: pg.ClientConfig, channel: string, handlers: ListenHandlers) {
    this.#config = config;
    this.#channel = channel;
    this.#handlers = handlers;
  }

  async start(): Promise<void> {
    await this.#connect();
  }

  async #connect(): Promise<void> {
    const client = new pg.Client(this.#config);
    client.on('notification', (msg) => {
      if (msg.channel === this.#channel) this.#handlers.onMessage(msg.payload ?? '');
    });
    client.on('error', (err) => this.#lost(client, err));
    client.on('end', () => this.#lost(client, new Error('notification connection closed')));
    this.#client = client;
    try {
      await client.connect();
      await client.query(`LISTEN "${this.#channel}"`);
    } catch (err) {
      this.#client = undefined;
      client.end().catch(() => undefined);
      throw err;
    }
    this.#delay = 250;
  }

  #lost(client: pg.Client, err: Error): void {
    if (this.#stopped || this.#client !== client) return;
    this.#client = undefined;
    client.end().catch(() => undefined);
    this.#handlers.onError?.(err);
    this.#schedule();
  }

  #schedule(): void {
    if (this.#stopped || this.#timer !== undefined) return;
    const delay = this.#delay;
    this.#delay = Math.min(this.#delay * 2, 5_000);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#connect().then(
        () => this.#handlers.onReconnect?.(),
        (err: Error) => {
          this.#handlers.onError?.(err);
          this.#schedule();
        },
      );
    }, delay);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    const client = this.#client;
    this.#client = undefined;
    if (client !== undefined) await client.end().catch(() => undefined);
  }
}

/**
 * Opens a PostgreSQL key store (`postgres://` / `postgresql://`). The pool connects
 * lazily; call `migrate()` or `ping()` to find out whether the database is reachable.
 */
export function openPostgresStore(url: string, opts: PostgresStoreOptions = {}): KeyStore {
  if (!/^postgres(ql)?:\/\//.test(url)) throw new StoreError('store-url-invalid', `not a PostgreSQL URL: ${url}`);
  return new SqlKeyStore(new PostgresDriver(url, opts));
}
