import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { SignJWT } from 'jose';
import { Agent, request } from 'undici';
import { spawnGateway, type GatewayProcess } from '../helpers/spawn.js';

const BIN = new URL('../../bin/portcullis.js', import.meta.url).pathname;
const ROOT = new URL('../../', import.meta.url).pathname;

export const JWT_SECRET = 'fleet-hmac-secret-that-is-long-enough-0123456789';
export const JWT_ISSUER = 'https://auth.fleet.test';

/** The config every instance of a fleet test runs: one store, one revocation backend. */
export function fleetConfig(o: { store: string; upstream: string; redis?: string; keyPrefix?: string; onError?: 'deny' | 'allow'; revocationTimeout?: string; routes?: string[] }): string {
  const revocation = [`redis: "${o.redis ?? ''}"`, `onError: ${o.onError ?? 'deny'}`];
  if (o.keyPrefix !== undefined) revocation.push(`keyPrefix: "${o.keyPrefix}"`);
  if (o.revocationTimeout !== undefined) revocation.push(`timeout: ${o.revocationTimeout}`);
  return [
    'listen: { host: 127.0.0.1, port: 0 }',
    'admin: { host: 127.0.0.1, port: 0 }',
    'upstreams:',
    `  api: { url: "${o.upstream}" }`,
    'roles: [basic, admin]',
    `store: { url: "${o.store}", poolSize: 3 }`,
    `revocation: { ${revocation.join(', ')} }`,
    'jwt:',
    '  issuers:',
    '    - name: fleet',
    `      issuer: "${JWT_ISSUER}"`,
    '      algorithms: [HS256]',
    `      secret: "${JWT_SECRET}"`,
    'routes:',
    ...(o.routes ?? []),
    '  - match: { path: "/**" }',
    '    minRole: basic',
    '    upstream: api',
    '',
  ].join('\n');
}

/**
 * An HS256 token of the fleet issuer with a fresh `jti`, valid for 15 minutes. `scheduled`:
 * no `iat`, and an `nbf` that many seconds ahead (within the clock tolerance).
 */
export async function fleetJwt(sub: string, role = 'basic', o: { scheduled?: number } = {}): Promise<{ token: string; jti: string }> {
  const jti = crypto.randomUUID();
  const jwt = new SignJWT({ role }).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setIssuer(JWT_ISSUER).setSubject(sub);
  if (o.scheduled === undefined) jwt.setIssuedAt();
  else jwt.setNotBefore(Math.floor(Date.now() / 1000) + o.scheduled);
  const token = await jwt.setExpirationTime('15m').setJti(jti).sign(new TextEncoder().encode(JWT_SECRET));
  return { token, jti };
}

export interface CliRun {
  code: number;
  out: string;
  err: string;
  /** performance.now() when the process was started and when it exited. */
  startedAt: number;
  exitedAt: number;
}

/** Runs `portcullis -c CONFIG ARGS…` from the build in its own process, as an operator would. */
export function cli(configFile: string, ...args: string[]): Promise<CliRun> {
  const startedAt = performance.now();
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, '-c', configFile, ...args], { cwd: ROOT, timeout: 30_000 }, (err, stdout, stderr) => {
      const exitedAt = performance.now();
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1;
      resolve({ code, out: stdout, err: stderr, startedAt, exitedAt });
    });
  });
}

/** Parses the JSON a `--json` command printed; fails loudly with its stderr otherwise. */
export function cliJson<T = Record<string, unknown>>(r: CliRun): T {
  if (r.code !== 0) throw new Error(`CLI exited with ${r.code}: ${r.err}`);
  return JSON.parse(r.out) as T;
}

export interface Instance {
  name: string;
  gw: GatewayProcess;
  agent: Agent;
}

/** Starts `n` gateway processes on one config, in parallel. */
export async function startFleet(n: number, yaml: string): Promise<Instance[]> {
  const gws = await Promise.all(Array.from({ length: n }, () => spawnGateway(yaml)));
  return gws.map((gw, i) => ({ name: `gw${i + 1}`, gw, agent: new Agent({ connections: 4, keepAliveTimeout: 10_000 }) }));
}

/**
 * Stops every instance whatever state the test left it in: SIGTERM, then SIGKILL if it has
 * not exited within 5 s; requests still in flight are aborted rather than waited for.
 */
export async function stopFleet(fleet: readonly Instance[]): Promise<void> {
  await Promise.allSettled(
    fleet.map(async (i) => {
      await i.agent.destroy().catch(() => undefined);
      const killer = setTimeout(() => i.gw.child.kill('SIGKILL'), 5_000);
      try {
        await i.gw.stop();
      } finally {
        clearTimeout(killer);
        await rm(i.gw.dir, { recursive: true, force: true });
      }
    }),
  );
}

export interface Answer {
  status: number;
  code: string | undefined;
  body: string;
}

/** One GET through an instance with the given headers. */
export async function call(inst: Pick<Instance, 'gw' | 'agent'>, path: string, headers: Record<string, string> = {}): Promise<Answer> {
  const r = await request(inst.gw.url + path, { headers, dispatcher: inst.agent });
  const body = await r.body.text();
  let code: string | undefined;
  if (r.statusCode >= 400) {
    try {
      code = (JSON.parse(body) as { code?: string }).code;
    } catch {
      code = undefined;
    }
  }
  return { status: r.statusCode, code, body };
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export interface Denial {
  instance: string;
  /** performance.now() when the first refused request was sent, and when its 401 arrived; undefined when none came within the deadline. */
  sentAt: number | undefined;
  at: number | undefined;
  status: number;
  code: string | undefined;
  requests: number;
  /** Requests let through (200) before the first refusal. */
  allowed: number;
}

/**
 * Polls every instance (one request in flight per instance, `gapMs` apart) until it
 * answers 401, or `deadlineMs` passes. Resolves with the moment each first refused.
 */
export function pollUntilDenied(fleet: readonly Instance[], path: string, headers: Record<string, string>, o: { gapMs?: number; deadlineMs?: number } = {}): Promise<Denial[]> {
  const gap = o.gapMs ?? 2;
  const deadline = performance.now() + (o.deadlineMs ?? 3_000);
  return Promise.all(
    fleet.map(async (inst) => {
      let last: Answer | undefined;
      let requests = 0;
      let allowed = 0;
      while (performance.now() < deadline) {
        const sentAt = performance.now();
        try {
          last = await call(inst, path, headers);
        } catch (err) {
          // A dropped connection is an answer too (never a refusal): record it and go on.
          last = { status: 0, code: (err as Error).message, body: '' };
        }
        requests++;
        if (last.status === 401) return { instance: inst.name, sentAt, at: performance.now(), status: last.status, code: last.code, requests, allowed };
        if (last.status === 200) allowed++;
        await sleep(gap);
      }
      return { instance: inst.name, sentAt: undefined, at: undefined, status: last?.status ?? 0, code: last?.code, requests, allowed };
    }),
  );
}

/** `+12.3 ms` / `-4.0 ms` */
export function signedMs(ms: number): string {
  return `${ms >= 0 ? '+' : ''}${ms.toFixed(1)} ms`;
}
