import type { ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { isStoreError } from '../store/errors.js';

/**
 * The closed set of problems the gateway answers with itself (docs/reference/responses.md).
 * `wwwAuthenticate` is the RFC 6750 error code carried in the challenge, `null` for a
 * bare challenge (no credential was sent: RFC 6750 §3.1 says to name no error then).
 */
export const PROBLEMS = {
  'bad-request': { status: 400, title: 'Bad request' },
  'token-missing': { status: 401, title: 'Credential required', wwwAuthenticate: null },
  'token-invalid': { status: 401, title: 'Invalid token', wwwAuthenticate: 'invalid_token' },
  'token-expired': { status: 401, title: 'Token expired', wwwAuthenticate: 'invalid_token' },
  'token-revoked': { status: 401, title: 'Token revoked', wwwAuthenticate: 'invalid_token' },
  'key-invalid': { status: 401, title: 'Invalid API key', wwwAuthenticate: 'invalid_token' },
  'key-expired': { status: 401, title: 'API key expired', wwwAuthenticate: 'invalid_token' },
  'key-revoked': { status: 401, title: 'API key revoked', wwwAuthenticate: 'invalid_token' },
  'refresh-invalid': { status: 401, title: 'Invalid refresh token', wwwAuthenticate: 'invalid_token' },
  'authorisation-required': { status: 403, title: 'Not authorised for this route', wwwAuthenticate: 'insufficient_scope' },
  'route-not-found': { status: 404, title: 'No route matches' },
  'invalid-argument': { status: 400, title: 'Invalid argument' },
  'import-invalid': { status: 400, title: 'Import refused' },
  'not-found': { status: 404, title: 'No such key' },
  conflict: { status: 409, title: 'Conflict' },
  'rate-limited': { status: 429, title: 'Too many requests' },
  'quota-exhausted': { status: 429, title: 'Usage quota exhausted' },
  'internal-error': { status: 500, title: 'Internal error' },
  'upstream-unavailable': { status: 502, title: 'Upstream unavailable' },
  'revocation-unavailable': { status: 503, title: 'Revocation check unavailable' },
  'store-unavailable': { status: 503, title: 'Key store unavailable' },
  'rate-limit-unavailable': { status: 503, title: 'Rate limit unavailable' },
  'upstream-timeout': { status: 504, title: 'Upstream timed out' },
} as const satisfies Record<string, { status: number; title: string; wwwAuthenticate?: string | null }>;

export type ProblemCode = keyof typeof PROBLEMS;

export const PROBLEM_CODES = Object.keys(PROBLEMS) as ProblemCode[];

/** Base of the `type` member (RFC 9457 §3.1.1): a stable URN per code, documented in README.md → Errors. */
export const PROBLEM_TYPE_BASE = 'urn:portcullis:problem:';

/** The codes a domain service (keys, tokens) refuses with: each is answered as the problem of that code. */
export type DomainCode = 'invalid-argument' | 'import-invalid' | 'not-found' | 'conflict' | 'refresh-invalid' | 'rate-limited';

/**
 * Base of the domain services' refusals. They speak of the operation, not of HTTP; the
 * HTTP edge (`toGatewayError`) maps them, once, to the problem of the same code.
 */
export abstract class DomainError extends Error {
  abstract readonly code: DomainCode;
  /** Every bad input line of a refused import, as `FILE:LINE message`. */
  readonly problems: readonly string[];
  /** Seconds until a refused attempt may be made again (`rate-limited`). */
  readonly retryAfter: number | undefined;

  constructor(message: string, options?: { problems?: readonly string[] | undefined; cause?: unknown; retryAfter?: number }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.problems = options?.problems ?? [];
    this.retryAfter = options?.retryAfter;
  }
}

/** The one error type the pipeline throws; `respond` turns it into problem+json. */
export class GatewayError extends Error {
  override readonly name = 'GatewayError';
  readonly code: ProblemCode;
  readonly status: number;
  /** Extra response headers, e.g. `Retry-After`. */
  readonly headers: Readonly<Record<string, string>> | undefined;
  /** Route label and normalized path, when the request got that far (for logs and metrics). */
  route: string | undefined;
  path: string | undefined;
  /** The rate-limit policy that refused the request, for metrics. */
  policy: string | undefined;
  /** Bad input lines of a refused import (the body's `problems` member). */
  readonly problems: readonly string[];

  constructor(code: ProblemCode, detail: string, options?: { cause?: unknown; headers?: Record<string, string>; problems?: readonly string[] }) {
    // A refusal of the client's request (4xx) is an answer, not a fault: capturing its stack
    // was the largest single cost of refusing a flood of bad credentials. 5xx keep theirs.
    const limit = Error.stackTraceLimit;
    if (PROBLEMS[code].status < 500) Error.stackTraceLimit = 0;
    super(detail, options?.cause === undefined ? undefined : { cause: options.cause });
    Error.stackTraceLimit = limit;
    this.code = code;
    this.status = PROBLEMS[code].status;
    this.headers = options?.headers;
    this.route = undefined;
    this.path = undefined;
    this.policy = undefined;
    this.problems = options?.problems ?? [];
  }
}

export function isGatewayError(err: unknown): err is GatewayError {
  return err instanceof GatewayError;
}

export interface ProblemBody {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: ProblemCode;
  requestId: string;
  /** Only on `import-invalid`: every bad line. */
  problems?: readonly string[];
}

/** Builds the RFC 9457 body for a problem; used by `respond` and by `explain`. */
export function problemBody(err: GatewayError, requestId: string): ProblemBody {
  const p = PROBLEMS[err.code];
  const body: ProblemBody = { type: PROBLEM_TYPE_BASE + err.code, title: p.title, status: p.status, detail: err.message, code: err.code, requestId };
  if (err.problems.length > 0) body.problems = err.problems;
  return body;
}

function quote(s: string): string {
  return s.replace(/["\\]/g, '').replace(/[^\x20-\x7e]/g, '');
}

/** The `WWW-Authenticate` value for a problem, or undefined when it carries none. */
export function challengeFor(err: GatewayError, realm = 'portcullis'): string | undefined {
  const p = PROBLEMS[err.code] as { wwwAuthenticate?: string | null };
  if (p.wwwAuthenticate === undefined) return undefined;
  if (p.wwwAuthenticate === null) return `Bearer realm="${realm}"`;
  return `Bearer realm="${realm}", error="${p.wwwAuthenticate}", error_description="${quote(err.message)}"`;
}

/**
 * Any error as the problem the client gets, on the data path and the admin API alike: a
 * GatewayError as it is, a domain service's refusal as the problem of its code, a key
 * store failure as `store-unavailable`, anything else — a fault of the gateway's own — as
 * `internal-error`, never as an upstream or store outage. Upstream failures are mapped
 * where they happen (proxy/upstreams).
 */
export function toGatewayError(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  if (err instanceof DomainError) {
    const headers = err.retryAfter === undefined ? undefined : { 'retry-after': String(err.retryAfter) };
    return new GatewayError(err.code, err.message, { cause: err, problems: err.problems, ...(headers ? { headers } : {}) });
  }
  if (isStoreError(err, 'store-unavailable')) return new GatewayError('store-unavailable', 'The key store is unavailable; retry shortly.', { cause: err, headers: { 'retry-after': '1' } });
  return new GatewayError('internal-error', 'The gateway failed to complete the request.', { cause: err });
}

/** Status, headers and body of the problem response for an error (GatewayError already mapped). */
function problemResponse(err: GatewayError, requestId: string): { headers: Record<string, string | number>; body: string } {
  const body = JSON.stringify(problemBody(err, requestId));
  const headers: Record<string, string | number> = {
    'content-type': 'application/problem+json',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    'x-request-id': requestId,
  };
  const challenge = err.status === 401 || err.status === 403 ? challengeFor(err) : undefined;
  if (challenge !== undefined) headers['www-authenticate'] = challenge;
  if (err.headers) Object.assign(headers, err.headers);
  return { headers, body };
}

/**
 * The only place the gateway writes an error response. Safe to call after headers were
 * sent (it then just ends the response).
 */
export function respond(res: ServerResponse, error: unknown, requestId: string, headOnly = false): GatewayError {
  const err = toGatewayError(error);
  if (res.headersSent) {
    res.destroy();
    return err;
  }
  const { headers, body } = problemResponse(err, requestId);
  res.writeHead(err.status, headers);
  res.end(headOnly ? undefined : body);
  return err;
}

/**
 * `respond` for a bare socket (a refused upgrade, an unparseable request: no ServerResponse);
 * the connection closes after the problem.
 */
export function respondOnSocket(socket: Duplex, error: unknown, requestId: string): GatewayError {
  const err = toGatewayError(error);
  if (!socket.writable) return err;
  const { headers, body } = problemResponse(err, requestId);
  let head = `HTTP/1.1 ${err.status} ${PROBLEMS[err.code].title}\r\n`;
  for (const [name, value] of Object.entries(headers)) head += `${name}: ${value}\r\n`;
  socket.end(`${head}connection: close\r\n\r\n${body}`);
  return err;
}
