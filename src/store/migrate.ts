import { readdir, readFile } from 'node:fs/promises';
import { StoreError } from './errors.js';
import type { MigrationResult } from './types.js';

/** One SQL migration file: `NNN_name.sql`. */
export interface Migration {
  readonly version: number;
  /** File name without `.sql`, e.g. `001_initial`. */
  readonly name: string;
  readonly sql: string;
}

/** SQL dialects with their own migration files; versions and names match across them. */
export type Dialect = 'postgres' | 'sqlite';

/** A connection the migration runner can use; transactions must run on that same connection. */
export interface MigrationConn {
  readonly dialect: Dialect;
  query<T = Record<string, unknown>>(text: string, params?: readonly unknown[]): Promise<T[]>;
  transaction<T>(fn: (tx: { query: MigrationConn['query']; exec(script: string): Promise<void> }) => Promise<T>): Promise<T>;
}

const FILE = /^(\d{3,})_([a-z0-9_]+)\.sql$/;

/**
 * Migrations live beside the sources (`src/store/migrations/<dialect>`); the compiled module
 * in `dist/store` finds them through the package's `src/store/migrations` (shipped in `files`).
 */
function candidateDirs(dialect: Dialect): URL[] {
  return [new URL(`./migrations/${dialect}/`, import.meta.url), new URL(`../../src/store/migrations/${dialect}/`, import.meta.url)];
}

const cached = new Map<Dialect, Promise<Migration[]>>();

/** Reads and orders one dialect's migration files (once per process unless `dir` is given). */
export function loadMigrations(dialect: Dialect, dir?: URL | string): Promise<Migration[]> {
  if (dir !== undefined) return readMigrations([dir]);
  let p = cached.get(dialect);
  if (p === undefined) cached.set(dialect, (p = readMigrations(candidateDirs(dialect))));
  return p;
}

// schema_migrations itself, which exists before any migration runs.
const SCHEMA_TABLE: Record<Dialect, string> = {
  postgres: `CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
  )`,
  sqlite: `CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER))
  )`,
};

async function readMigrations(dirs: ReadonlyArray<URL | string>): Promise<Migration[]> {
  let names: string[] | undefined;
  let found: URL | string | undefined;
  for (const dir of dirs) {
    try {
      names = await readdir(dir);
      found = dir;
      break;
    } catch {
      // try the next location
    }
  }
  if (names === undefined || found === undefined) {
    throw new StoreError('migration-failed', `migrations directory not found (looked in ${dirs.map(String).join(', ')})`);
  }
  const out: Migration[] = [];
  for (const file of names.sort()) {
    if (!file.endsWith('.sql')) continue;
    const m = FILE.exec(file);
    if (!m) throw new StoreError('migration-failed', `migration file ${file} is not named NNN_name.sql`);
    const path = typeof found === 'string' ? `${found.replace(/\/$/, '')}/${file}` : new URL(file, found);
    out.push({ version: Number(m[1]), name: file.slice(0, -4), sql: await readFile(path, 'utf8') });
  }
  out.sort((a, b) => a.version - b.version);
  for (let i = 1; i < out.length; i++) {
    if (out[i]!.version === out[i - 1]!.version) {
      throw new StoreError('migration-failed', `two migrations share version ${out[i]!.version}: ${out[i - 1]!.name}, ${out[i]!.name}`);
    }
  }
  return out;
}

/**
 * Applies the pending migrations in version order, each in its own transaction together
 * with its `schema_migrations` row. The caller holds the migration lock.
 */
export async function runMigrations(conn: MigrationConn, migrations?: readonly Migration[]): Promise<MigrationResult> {
  const all = migrations ?? (await loadMigrations(conn.dialect));
  try {
    await conn.query(SCHEMA_TABLE[conn.dialect]);
  } catch (err) {
    throw new StoreError('store-unavailable', `cannot create schema_migrations: ${(err as Error).message}`, { cause: err });
  }
  const rows = await conn.query<{ version: number; name: string }>('SELECT version, name FROM schema_migrations ORDER BY version');
  const recorded = new Map(rows.map((r) => [Number(r.version), r.name]));
  const applied: string[] = [];
  for (const m of all) {
    const name = recorded.get(m.version);
    if (name !== undefined) {
      if (name !== m.name) {
        throw new StoreError('migration-failed', `schema_migrations has version ${m.version} as ${name}, but the file is ${m.name}`);
      }
      continue;
    }
    try {
      await conn.transaction(async (tx) => {
        await tx.exec(m.sql);
        await tx.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
      });
    } catch (err) {
      throw new StoreError('migration-failed', `migration ${m.name} failed: ${(err as Error).message}`, { cause: err });
    }
    recorded.set(m.version, m.name);
    applied.push(m.name);
  }
  const current = [...recorded.entries()].sort((a, b) => a[0] - b[0]).map(([, n]) => n);
  return { applied, current };
}
