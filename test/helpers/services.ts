import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { Redis } from 'ioredis';

export const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/** Whether a service answers: undefined when it does, else why not. */
export async function serviceProbe(kind: 'postgres' | 'redis'): Promise<string | undefined> {
  try {
    if (kind === 'postgres') {
      const c = new pg.Client({ connectionString: DATABASE_URL, connectionTimeoutMillis: 2000 });
      await c.connect();
      await c.end();
    } else {
      const r = new Redis(REDIS_URL, { lazyConnect: true, connectTimeout: 2000, maxRetriesPerRequest: 0, retryStrategy: () => null });
      r.on('error', () => {});
      await r.connect();
      await r.ping();
      r.disconnect();
    }
    return undefined;
  } catch (err) {
    return `${kind} not reachable (${(err as Error).message})`;
  }
}

/** Under CI a missing service fails the test; elsewhere it is skipped with this reason. */
export async function serviceSkip(kind: 'postgres' | 'redis'): Promise<string | false> {
  const missing = await serviceProbe(kind);
  if (missing === undefined) return false;
  if (process.env.CI === 'true') throw new Error(`${kind} is required under CI and is not reachable: ${missing}`);
  return missing;
}

/** A throw-away PostgreSQL database for one test file; dropped by `drop()`. */
export async function tempDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `pcl_t_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: DATABASE_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const u = new URL(DATABASE_URL);
  u.pathname = `/${name}`;
  return {
    url: u.toString(),
    drop: async () => {
      const c = new pg.Client({ connectionString: DATABASE_URL });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

/** A unique Redis key prefix; `clean()` deletes every key under it. */
export function redisPrefix(): { prefix: string; clean(): Promise<void> } {
  const prefix = `pcl-t-${randomBytes(6).toString('hex')}:`;
  return {
    prefix,
    clean: async () => {
      const r = new Redis(REDIS_URL);
      const keys = await r.keys(`${prefix}*`);
      if (keys.length) await r.del(...keys);
      await r.quit();
    },
  };
}
