import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import pg from 'pg';
import { Redis } from 'ioredis';
import { serviceProbe, tempDatabase } from '../helpers/services.js';
import type { RevocationLogger, RevocationSnapshot, RevocationSource } from '../../src/revocation/types.js';

export { DATABASE_URL, REDIS_URL } from '../helpers/services.js';
export const CI = process.env.CI === 'true';

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function randomTag(): string {
  return randomBytes(6).toString('hex');
}

/** A logger that keeps what it was told, so tests can assert that failures were logged. */
export function recordingLogger(): RevocationLogger & { lines: Array<{ level: string; obj: object; msg?: string | undefined }> } {
  const lines: Array<{ level: string; obj: object; msg?: string | undefined }> = [];
  return {
    lines,
    info: (obj, msg) => void lines.push({ level: 'info', obj, msg }),
    warn: (obj, msg) => void lines.push({ level: 'warn', obj, msg }),
    error: (obj, msg) => void lines.push({ level: 'error', obj, msg }),
  };
}

/** Whether a service answers (undefined) or why not; outside CI a missing service skips, in CI it fails. */
export const serviceAvailable = serviceProbe;

/** A throw-away database for one test file. */
export const createDatabase = tempDatabase;

/**
 * A durable revocation record in real tables, shaped like the key store's: rows carry the
 * time they were written so `changedSince` can find what a disconnected instance missed.
 */
export class TableSource implements RevocationSource {
  readonly pool: pg.Pool;
  loadCalls = 0;
  changedSinceCalls: number[] = [];

  constructor(url: string) {
    this.pool = new pg.Pool({ connectionString: url, max: 2 });
    // Tests terminate backends on purpose (a killed listener, the database dropped at the
    // end): an idle client's error must not crash the test process.
    this.pool.on('error', () => undefined);
  }

  async migrate(): Promise<void> {
    await this.pool.query(`
      CREATE TABLE IF NOT EXISTS t_token_revocations (
        revocation_id text PRIMARY KEY,
        until timestamptz,
        revoked_at timestamptz NOT NULL DEFAULT now());
      CREATE TABLE IF NOT EXISTS t_subject_revocations (
        subject text PRIMARY KEY,
        before timestamptz NOT NULL,
        revoked_at timestamptz NOT NULL DEFAULT now());`);
  }

  async recordId(revocationId: string, until?: number): Promise<void> {
    await this.pool.query(
      `INSERT INTO t_token_revocations (revocation_id, until) VALUES ($1, to_timestamp($2::float8 / 1000))
       ON CONFLICT (revocation_id) DO UPDATE SET until = EXCLUDED.until, revoked_at = now()`,
      [revocationId, until ?? null],
    );
  }

  async recordSubject(subject: string, before: number): Promise<void> {
    await this.pool.query(
      `INSERT INTO t_subject_revocations (subject, before) VALUES ($1, to_timestamp($2::float8 / 1000))
       ON CONFLICT (subject) DO UPDATE SET before = GREATEST(t_subject_revocations.before, EXCLUDED.before), revoked_at = now()`,
      [subject, before],
    );
  }

  async loadActive(): Promise<RevocationSnapshot> {
    this.loadCalls++;
    return this.#read(`(until IS NULL OR until > now())`, 'true', []);
  }

  async changedSince(ts: number): Promise<RevocationSnapshot> {
    this.changedSinceCalls.push(ts);
    const cond = `revoked_at >= to_timestamp($1::float8 / 1000)`;
    return this.#read(cond, cond, [ts]);
  }

  async #read(idCond: string, subjectCond: string, params: unknown[]): Promise<RevocationSnapshot> {
    const ids = await this.pool.query<{ revocation_id: string; until: string | null }>(
      `SELECT revocation_id, (extract(epoch FROM until) * 1000)::bigint AS until FROM t_token_revocations WHERE ${idCond}`,
      params,
    );
    const subjects = await this.pool.query<{ subject: string; before: string }>(
      `SELECT subject, (extract(epoch FROM before) * 1000)::bigint AS before FROM t_subject_revocations WHERE ${subjectCond}`,
      params,
    );
    return {
      ids: ids.rows.map((r) => ({ revocationId: r.revocation_id, until: r.until === null ? undefined : Number(r.until) })),
      subjects: subjects.rows.map((r) => ({ subject: r.subject, before: Number(r.before) })),
    };
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/**
 * A private redis-server that a test may kill and restart on the same port. redis-server
 * cannot listen on port 0 (that disables TCP), so a port is picked free first.
 */
export class PrivateRedis {
  #proc: ChildProcess | undefined;
  readonly port: number;
  private constructor(port: number) {
    this.port = port;
  }

  static async start(): Promise<PrivateRedis> {
    const r = new PrivateRedis(await freePort());
    await r.restart();
    return r;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async restart(): Promise<void> {
    const proc = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.#proc = proc;
    await new Promise<void>((resolve, reject) => {
      let out = '';
      const onData = (b: Buffer) => {
        out += b.toString();
        if (out.includes('Ready to accept connections')) {
          proc.stdout!.off('data', onData);
          resolve();
        }
      };
      proc.stdout!.on('data', onData);
      proc.once('exit', (code) => reject(new Error(`redis-server exited with ${code}: ${out}`)));
      proc.once('error', reject);
    });
    proc.removeAllListeners('exit');
  }

  /** SIGKILL: the server vanishes without closing anything gracefully. */
  async kill(): Promise<void> {
    const proc = this.#proc;
    if (proc === undefined || proc.exitCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGKILL');
    await exited;
    this.#proc = undefined;
  }

  /** SIGSTOP / SIGCONT: the server keeps its connections open but stops answering. */
  pause(): void {
    this.#proc?.kill('SIGSTOP');
  }

  resume(): void {
    this.#proc?.kill('SIGCONT');
  }

  /** One-off connection for inspecting the server. */
  async admin<T>(fn: (r: Redis) => Promise<T>): Promise<T> {
    const r = new Redis(this.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    r.on('error', () => {});
    await r.connect();
    try {
      return await fn(r);
    } finally {
      r.disconnect();
    }
  }
}

/** Parses `INFO` output into numbers by field name. */
export function parseInfo(info: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of info.split(/\r?\n/)) {
    const i = line.indexOf(':');
    if (i > 0) m.set(line.slice(0, i), line.slice(i + 1));
  }
  return m;
}
