import type { JWSHeaderParameters, JWTPayload } from 'jose';
import type { Identity } from '../types.js';
import type { JwtCheck, JwtProblemCode } from './jose-errors.js';
import type { Issuer } from './issuer.js';

/** One check of `explain`, in evaluation order. */
export interface JwtCheckResult {
  readonly check: JwtCheck;
  readonly ok: boolean;
  readonly detail: string;
}

/** What `explain --token` prints: every check performed and the decision. */
export interface JwtExplanation {
  readonly decision: 'accept' | 'reject';
  /** The problem code when rejected. */
  readonly code?: JwtProblemCode | undefined;
  readonly detail?: string | undefined;
  /** Name of the configured issuer the token was matched to, if any. */
  readonly issuer?: string | undefined;
  readonly checks: readonly JwtCheckResult[];
  readonly identity?: Identity | undefined;
}

/** What `explain` collects while a token is checked. */
export interface Report {
  readonly checks: JwtCheckResult[];
  issuer?: string;
}

export type Trace = Report | undefined;

/** Records a passed check when tracing; a no-op on the request path. */
export function pass(trace: Trace, check: JwtCheck, detail: string): void {
  trace?.checks.push({ check, ok: true, detail });
}

/** The checks jose ran in one call, listed one by one once it accepted the token. */
export function traceVerified(trace: Report, issuer: Issuer, header: JWSHeaderParameters, payload: JWTPayload, nowMs: number): void {
  pass(trace, 'key', issuer.jwks ? `from ${issuer.jwks.uri}` : issuer.config.secret !== undefined ? 'shared secret' : 'configured public key');
  pass(trace, 'signature', 'valid');
  if (issuer.config.typ !== undefined) pass(trace, 'typ', `typ ${String(header.typ)}`);
  pass(trace, 'required-claims', `present: ${(issuer.options.requiredClaims ?? []).join(', ') || '(none)'}`);
  pass(trace, 'iss', `iss ${payload.iss}`);
  if (issuer.config.audience !== undefined) pass(trace, 'aud', `aud ${JSON.stringify(payload.aud)}`);
  pass(trace, 'nbf', payload.nbf === undefined ? 'absent' : `nbf ${new Date(payload.nbf * 1000).toISOString()}`);
  pass(trace, 'exp', payload.exp === undefined ? 'absent (not required)' : `exp ${new Date(payload.exp * 1000).toISOString()}`);
  if (issuer.maxTokenAge !== undefined) pass(trace, 'max-age', `issued ${Math.floor(nowMs / 1000) - (payload.iat ?? 0)}s ago, limit ${issuer.maxTokenAge}s`);
}
