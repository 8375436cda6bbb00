import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { isIP } from 'node:net';
import { GatewayError, respond } from '../http/problem.js';
import { hostName } from '../http/match.js';
import { readJsonObject } from '../http/body.js';
import { safeEqual } from '../util/timing-safe.js';

/** A dependency `/readyz` reports on. */
export interface ReadinessCheck {
  readonly name: string;
  ready(): boolean | Promise<boolean>;
}

export interface AdminRequest {
  readonly method: string;
  readonly path: string;
  readonly query: URLSearchParams;
  readonly params: Record<string, string>;
  readonly requestId: string;
  body(): Promise<unknown>;
}

export interface AdminReply {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

export type AdminRoute = { method: string; pattern: string; handler: (req: AdminRequest) => Promise<AdminReply> };

export interface AdminOptions {
  host: string;
  port: number;
  checks: () => readonly ReadinessCheck[];
  metrics?: { contentType: string; text(): Promise<string> } | undefined;
  jwks?: (() => unknown) | undefined;
  /** Accepts or refuses the Authorization header of an admin API call. */
  authorize: (authorization: string | undefined) => boolean | Promise<boolean>;
  routes: readonly AdminRoute[];
  /** Host names answered besides IP literals and `localhost` (lower-case). */
  allowedHosts?: readonly string[];
}

const MAX_BODY = 1 << 20;

function match(pattern: string, path: string): Record<string, string> | null {
  const p = pattern.split('/');
  const s = path.split('/');
  if (p.length !== s.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < p.length; i++) {
    if (p[i]!.startsWith(':')) params[p[i]!.slice(1)] = decodePathParam(s[i]!);
    else if (p[i] !== s[i]) return null;
  }
  return params;
}

function decodePathParam(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new GatewayError('bad-request', 'The admin path is not valid percent-encoding.');
  }
}

/**
 * DNS rebinding: a page from evil.example whose name is re-pointed at 127.0.0.1 talks to
 * this listener with `Host: evil.example`. Only hosts the operator expects are answered.
 */
export function adminHostAllowed(host: string | undefined, allowed: readonly string[]): boolean {
  const h = hostName(host);
  if (h === undefined || h === '') return false;
  if (h === 'localhost' || isIP(h.startsWith('[') ? h.slice(1, -1) : h) !== 0) return true;
  return allowed.includes(h);
}

/** Constant-time comparison of a presented bearer token with the configured one. */
export function bearerMatches(authorization: string | undefined, token: string): boolean {
  if (!token || !authorization) return false;
  const m = /^Bearer\s+(.+)$/i.exec(authorization);
  if (!m) return false;
  return safeEqual(m[1]!.trim(), token);
}

function json(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...(text ? { 'content-length': Buffer.byteLength(text) } : {}), ...headers });
  res.end(text);
}

/**
 * The admin listener (its own host/port): health, readiness, metrics, the assertion JWKS,
 * and the authenticated admin API.
 */
export class AdminServer {
  readonly server: http.Server;

  private readonly opts: AdminOptions;
  constructor(opts: AdminOptions) {
    this.opts = opts;
    const allowed = (opts.allowedHosts ?? []).map((h) => hostName(h)!);
    this.server = http.createServer((req, res) => {
      if (!adminHostAllowed(req.headers.host, allowed)) {
        respond(res, new GatewayError('bad-request', 'This Host is not answered here; list it in admin.allowedHosts.'), randomUUID());
        return;
      }
      this.handle(req, res).catch((err) => respond(res, err, randomUUID()));
    });
  }

  async listen(): Promise<{ host: string; port: number }> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.opts.port, this.opts.host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    const a = this.server.address() as AddressInfo;
    return { host: a.address, port: a.port };
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = adminUrl(req.url);
    const path = url.pathname;
    if (req.method === 'GET' || req.method === 'HEAD') {
      if (path === '/healthz') return json(res, 200, { status: 'ok' });
      if (path === '/readyz') {
        const checks = this.opts.checks();
        const answers = await Promise.all(checks.map(boundedCheck));
        const results: Record<string, boolean> = {};
        checks.forEach((c, i) => {
          results[c.name] = answers[i]!;
        });
        const ok = Object.values(results).every(Boolean);
        return json(res, ok ? 200 : 503, { status: ok ? 'ready' : 'not-ready', checks: results });
      }
      if (path === '/metrics' && this.opts.metrics) {
        const text = await this.opts.metrics.text();
        res.writeHead(200, { 'content-type': this.opts.metrics.contentType });
        res.end(text);
        return;
      }
      if (path === '/.well-known/jwks.json' && this.opts.jwks) return json(res, 200, this.opts.jwks(), { 'cache-control': 'max-age=60' });
    }
    const requestId = randomUUID();
    for (const r of this.opts.routes) {
      if (r.method !== req.method) continue;
      const params = match(r.pattern, path);
      if (params === null) continue;
      if (!(await this.opts.authorize(req.headers.authorization))) {
        respond(res, new GatewayError('token-missing', 'The admin API needs the admin token (Authorization: Bearer …).'), requestId);
        return;
      }
      let reply: AdminReply;
      try {
        reply = await r.handler({ method: req.method, path, query: url.searchParams, params, requestId, body: () => readJsonObject(req, MAX_BODY) });
      } catch (err) {
        respond(res, err, requestId);
        return;
      }
      return json(res, reply.status, reply.body, reply.headers);
    }
    respond(res, new GatewayError('route-not-found', `No admin endpoint ${req.method} ${path}.`), requestId);
  }
}

function adminUrl(target: string | undefined): URL {
  if (target === undefined || !target.startsWith('/')) throw new GatewayError('bad-request', 'The admin path must start with "/".');
  try {
    return new URL(target, 'http://admin');
  } catch {
    throw new GatewayError('bad-request', 'The admin path could not be parsed.');
  }
}

/**
 * A readiness check that has not answered within this long counts as not ready: a hung
 * dependency must make `/readyz` say so, not hang the probe (whose own timeout is often 1 s).
 */
const READY_CHECK_TIMEOUT_MS = 900;

async function boundedCheck(c: ReadinessCheck): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      Promise.resolve().then(() => c.ready()),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), READY_CHECK_TIMEOUT_MS);
      }),
    ]);
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}
