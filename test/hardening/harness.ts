import { randomBytes, randomUUID } from 'node:crypto';
import { Agent, request } from 'undici';
import { SignJWT } from 'jose';
import { parseConfig } from '../../src/config/load.js';
import { startPortcullis, type Portcullis } from '../../src/gateway.js';
import { memoryLogger } from '../helpers/gateway.js';

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export const JWT_SECRET = 'hardening-secret-0123456789abcdef0123456789';
export const JWT_ISSUER = 'https://auth.hardening.test';

/** One request shape the traffic loop sends: a path and its headers. */
export interface Probe {
  path: string;
  headers?: Record<string, string>;
}

/** One answered (or failed) request. `status` 0: the client gave up or the connection failed. */
export interface Sample {
  phase: string;
  kind: string;
  status: number;
  code: string | undefined;
  retryAfter: string | undefined;
  ms: number;
  error: string | undefined;
  /** Milliseconds since the traffic started, at the request's start. */
  at: number;
  /** For a 200 from the test upstream: the target it says it answered (catches responses handed to the wrong request). */
  echoed: string | undefined;
}

/**
 * Steady concurrent traffic: `workers` loops per probe, until
 * `stop()` or `maxMs` (a hard bound so a broken test cannot run forever). Every sample is
 * tagged with the phase current when the request started.
 */
export class Traffic {
  readonly samples: Sample[] = [];
  #phase = 'start';
  /** When each phase ended (ms since the traffic started). */
  readonly #ended = new Map<string, number>();
  #running = false;
  #loops: Array<Promise<void>> = [];
  readonly #agent: Agent;
  readonly #t0 = performance.now();

  private readonly base: string;
  private readonly probes: Record<string, Probe>;
  private readonly opts: { workers?: number; pauseMs?: number; hangMs?: number; maxMs?: number };
  constructor(
    base: string,
    probes: Record<string, Probe>,
    opts: { workers?: number; pauseMs?: number; hangMs?: number; maxMs?: number } = {},
  ) {
    this.base = base;
    this.probes = probes;
    this.opts = opts;
    const hang = opts.hangMs ?? 30_000;
    this.#agent = new Agent({ headersTimeout: hang, bodyTimeout: hang, connections: 64 });
  }

  get phase(): string {
    return this.#phase;
  }

  /** Switches phase; the old one's end is remembered so {@link inside} can leave out requests that straddled it. */
  set phase(next: string) {
    this.#ended.set(this.#phase, this.now());
    this.#phase = next;
  }

  now(): number {
    return performance.now() - this.#t0;
  }

  /** Sends one probe now and records it (also used outside the loop). */
  async send(kind: string, phase = this.phase): Promise<Sample> {
    const p = this.probes[kind]!;
    const started = performance.now();
    const base = { phase, kind, at: started - this.#t0 };
    let s: Sample;
    try {
      const r = await request(this.base + p.path, { headers: p.headers ?? {}, dispatcher: this.#agent });
      const text = await r.body.text();
      let code: string | undefined;
      let echoed: string | undefined;
      if (r.statusCode === 200 && r.headers['x-upstream'] === 'yes') echoed = (JSON.parse(text) as { url?: string }).url;
      if (r.statusCode >= 400) {
        try {
          code = (JSON.parse(text) as { code?: string }).code;
        } catch {
          code = undefined;
        }
      }
      const ra = r.headers['retry-after'];
      s = { ...base, status: r.statusCode, code, retryAfter: typeof ra === 'string' ? ra : undefined, ms: performance.now() - started, error: undefined, echoed };
    } catch (err) {
      s = { ...base, status: 0, code: undefined, retryAfter: undefined, ms: performance.now() - started, error: String((err as Error).message ?? err), echoed: undefined };
    }
    this.samples.push(s);
    return s;
  }

  start(): void {
    this.#running = true;
    const deadline = performance.now() + (this.opts.maxMs ?? 120_000);
    // Loops per kind, so a kind that is slow while a dependency is down (an uncached key
    // waiting on the store) does not starve the others: each keeps its own steady rate.
    for (const kind of Object.keys(this.probes)) {
      for (let w = 0; w < (this.opts.workers ?? 1); w++) {
        this.#loops.push(
          (async () => {
            while (this.#running && performance.now() < deadline) {
              await this.send(kind);
              await sleep(this.opts.pauseMs ?? 10);
            }
          })(),
        );
      }
    }
  }

  async stop(): Promise<void> {
    this.#running = false;
    await Promise.all(this.#loops);
    await this.#agent.close();
  }

  in(phase: string, kind?: string): Sample[] {
    return this.samples.filter((s) => s.phase === phase && (kind === undefined || s.kind === kind));
  }

  /** Requests that started and finished within the phase: what a client saw while that state held. */
  inside(phase: string, kind?: string): Sample[] {
    return this.in(phase, kind).filter((s) => this.within(s));
  }

  /** Whether a request finished before its phase ended (did not straddle a change of state). */
  within(s: Sample): boolean {
    return s.at + s.ms <= (this.#ended.get(s.phase) ?? Infinity);
  }

  /** Status histogram of a phase (and kind), e.g. `{ "200": 12, "503 revocation-unavailable": 4 }`. */
  summary(phase: string, kind?: string, strict = false): Record<string, number> {
    const out: Record<string, number> = {};
    for (const s of strict ? this.inside(phase, kind) : this.in(phase, kind)) {
      const k = s.status === 0 ? `failed: ${s.error}` : s.code ? `${s.status} ${s.code}` : String(s.status);
      out[k] = (out[k] ?? 0) + 1;
    }
    return out;
  }

  /** 200s whose upstream echo names a different target than the request's: a response given to the wrong client. */
  mismatched(): Sample[] {
    return this.samples.filter((s) => s.echoed !== undefined && s.echoed !== this.probes[s.kind]!.path);
  }

  maxMs(phase?: string): number {
    let m = 0;
    for (const s of this.samples) if (phase === undefined || s.phase === phase) m = Math.max(m, s.ms);
    return m;
  }
}

/**
 * Polls `probe` until it answers `status` (the service resumed by itself), or gives up
 * after `withinMs`. Returns the milliseconds it took, or -1.
 */
export async function recovery(traffic: Traffic, kind: string, status: number, withinMs: number): Promise<number> {
  const t0 = performance.now();
  while (performance.now() - t0 < withinMs) {
    const s = await traffic.send(kind, 'recovering');
    if (s.status === status) return performance.now() - t0;
    await sleep(50);
  }
  return -1;
}

/** An HS256 token from the test issuer. */
export async function signJwt(claims: { sub: string; role: string; jti?: string; ttlSeconds?: number }): Promise<{ token: string; jti: string; exp: number }> {
  const jti = claims.jti ?? randomUUID();
  const exp = Math.floor(Date.now() / 1000) + (claims.ttlSeconds ?? 3600);
  const token = await new SignJWT({ role: claims.role })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuer(JWT_ISSUER)
    .setSubject(claims.sub)
    .setJti(jti)
    .setIssuedAt()
    .setExpirationTime(exp)
    .sign(new TextEncoder().encode(JWT_SECRET));
  return { token, jti, exp: exp * 1000 };
}

/** Gateway config for the outage suites: a public prefix, everything else needs `basic`. */
export function outageConfig(o: {
  upstream: string;
  store: string;
  redis?: string;
  keyPrefix?: string;
  onError?: 'deny' | 'allow';
  revocationTimeout?: string;
  upstreamTimeout?: string;
}): string {
  return `
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0, token: "${randomBytes(16).toString('hex')}" }
upstreams:
  api: { url: "${o.upstream}", timeout: ${o.upstreamTimeout ?? '2s'}, connectTimeout: 1s }
roles: [basic, premium, admin]
store: { url: "${o.store}", poolSize: 4 }
revocation:
  redis: "${o.redis ?? ''}"
  onError: ${o.onError ?? 'deny'}
  keyPrefix: "${o.keyPrefix ?? 'portcullis:'}"
  timeout: ${o.revocationTimeout ?? '300ms'}
jwt:
  issuers:
    - name: hardening
      issuer: "${JWT_ISSUER}"
      algorithms: [HS256]
      secret: "${JWT_SECRET}"
apiKeys:
  # Cheap argon2 parameters are not allowed below OWASP's; keep the defaults and create few keys.
  cache: { max: 1000, ttl: 60s }
  # The bad-credential traffic comes from the same address as the good one: do not let the
  # per-client failure limit turn this suite into a rate-limit test.
  failedAttempts: { max: 1000000, window: 1m }
log: { level: warn }
routes:
  - match: { path: "/public/**" }
    public: true
    upstream: api
  - match: { path: "/**" }
    minRole: basic
    upstream: api
`;
}

/** A whole in-process Portcullis on port 0, with its warn+ log lines collected. */
export async function startOutageGateway(yaml: string): Promise<{ p: Portcullis; url: string; lines: string[] }> {
  const loaded = parseConfig(yaml, 'hardening.yaml', {});
  const { logger, lines } = memoryLogger('warn');
  const p = await startPortcullis(loaded, { logger, listen: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 } });
  return { p, url: p.gateway!.url(), lines };
}

export function isSuccess(status: number): boolean {
  return status >= 200 && status < 300;
}
