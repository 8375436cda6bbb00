import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';

type Tap = {
  teardown(fn: () => unknown): void;
  comment(...args: unknown[]): void;
};

export const BASE_DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/**
 * Creates a throw-away database for one test file and drops it at teardown. Resolves to
 * its URL, or undefined when PostgreSQL is unreachable outside CI (in CI that throws:
 * a missing service must fail the run).
 */
export async function tempPgDatabase(t: Tap): Promise<string | undefined> {
  const admin = new pg.Client({ connectionString: BASE_DATABASE_URL, connectionTimeoutMillis: 3000 });
  try {
    await admin.connect();
  } catch (err) {
    await admin.end().catch(() => undefined);
    if (process.env.CI === 'true') throw new Error(`PostgreSQL is required in CI but unreachable at ${BASE_DATABASE_URL}: ${(err as Error).message}`);
    t.comment(`PostgreSQL unreachable at ${BASE_DATABASE_URL} (${(err as Error).message}): skipping PostgreSQL tests`);
    return undefined;
  }
  const name = `pcl_t_${randomBytes(6).toString('hex')}`;
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  t.teardown(async () => {
    const c = new pg.Client({ connectionString: BASE_DATABASE_URL });
    await c.connect();
    await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await c.end();
  });
  const url = new URL(BASE_DATABASE_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

/** A temporary directory removed at teardown. */
export async function tempDir(t: Tap, prefix = 'pcl-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}
