import { decodeJwt, decodeProtectedHeader, errors, jwtVerify, type JWSHeaderParameters, type JWTPayload, type JWTVerifyOptions } from 'jose';
import { sha256Hex } from '../../util/sha256.js';
import { identityFromClaims, type ClaimRules } from './claims.js';
import type { Issuer } from './issuer.js';
import { fromJoseError, rejectToken } from './jose-errors.js';
import { pass, type Trace } from './trace.js';

// The checks of one token verification, in the order they run (docs/reference/request-pipeline.md,
// step 4). Each throws a JwtRejection (or a jose error) and records itself when tracing.

const SEGMENT = /^[A-Za-z0-9_-]+$/;
/** Header parameters that point at or carry a key: honouring them lets the token pick its own key. */
const KEY_BEARING_HEADERS = ['jwk', 'jku', 'x5u', 'x5c'] as const;

/** Issuers by their `iss`; the key `undefined` holds the issuer for tokens without `iss`. */
export type IssuersByIss = ReadonlyMap<string | undefined, readonly Issuer[]>;

export function checkSize(token: string, max: number, trace: Trace): void {
  if (token.length > max) throw rejectToken('size', `The token exceeds ${max} bytes.`);
  pass(trace, 'size', `${token.length} bytes, limit ${max}`);
}

/** A compact JWS: three base64url segments, JSON header and claims (neither trusted yet). */
export function decodeCompact(token: string, trace: Trace): { header: JWSHeaderParameters; unverified: JWTPayload } {
  const segments = token.split('.');
  if (segments.length === 5) throw rejectToken('format', 'Encrypted tokens (JWE) are not accepted.');
  if (segments.length !== 3) throw rejectToken('format', `The token has ${segments.length} segments; a signed JWT has 3.`);
  if (segments[2] === '') throw rejectToken('format', 'The token has no signature.');
  if (!segments.every((s) => SEGMENT.test(s))) throw rejectToken('format', 'The token contains characters outside base64url.');
  let decoded: { header: JWSHeaderParameters; unverified: JWTPayload };
  try {
    decoded = { header: decodeProtectedHeader(token) as JWSHeaderParameters, unverified: decodeJwt(token) };
  } catch (err) {
    throw rejectToken('format', 'The token is malformed.', err);
  }
  pass(trace, 'format', 'compact JWS: three base64url segments, JSON header and claims');
  return decoded;
}

/** No key named or embedded by the token, no critical extension, an algorithm. */
export function checkHeader(header: JWSHeaderParameters, trace: Trace): asserts header is JWSHeaderParameters & { alg: string } {
  for (const name of KEY_BEARING_HEADERS) {
    if (Object.hasOwn(header, name)) throw rejectToken('header', `The token header carries "${name}"; keys named or embedded by the token are never used.`);
  }
  if (Object.hasOwn(header, 'crit')) throw rejectToken('header', 'The token header declares critical extensions, and none is understood.');
  if (typeof header.alg !== 'string') throw rejectToken('header', 'The token header has no algorithm.');
  pass(trace, 'header', `alg ${header.alg}${header.kid !== undefined ? `, kid ${JSON.stringify(header.kid)}` : ''}; no jwk/jku/x5u/x5c/crit`);
}

/**
 * The configured issuer whose keys and rules apply, and its algorithm check. The
 * unverified `iss` only picks it; jose checks `iss` again after the signature.
 */
export function pickIssuer(issuers: IssuersByIss, iss: unknown, alg: string, trace: Trace): Issuer {
  // A token without `iss` can only match an issuer configured without one (never the reverse).
  const candidates = typeof iss === 'string' ? issuers.get(iss) : iss === undefined ? issuers.get(undefined) : undefined;
  if (candidates === undefined) throw rejectToken('issuer', 'The token was not issued by a configured issuer.');
  const issuer = candidates.find((c) => c.algorithms.has(alg)) ?? candidates[0]!;
  if (trace) trace.issuer = issuer.name;
  pass(trace, 'issuer', `iss ${JSON.stringify(iss)} is issuer ${issuer.name}`);
  if (!issuer.algorithms.has(alg)) throw rejectToken('algorithm', "The token's algorithm is not accepted for its issuer.");
  pass(trace, 'algorithm', `${alg} in [${[...issuer.algorithms].join(', ')}]`);
  return issuer;
}

/**
 * The signature and the registered claims, by jose. An expired token is `token-expired`
 * only when nothing checked after the expiry fails too: those checks run on its claims.
 */
export async function verifySigned(token: string, issuer: Issuer, nowMs: number, trace: Trace, rules: ClaimRules, id: string | undefined): Promise<JWTPayload> {
  const options: JWTVerifyOptions = { ...issuer.options, currentDate: new Date(nowMs) };
  try {
    return (await verifyWithAnyKey(token, issuer, options)).payload;
  } catch (err) {
    const rejection = fromJoseError(err);
    if (trace && rejection.check !== 'key' && rejection.check !== 'signature' && rejection.check !== 'algorithm' && rejection.check !== 'format') {
      pass(trace, 'key', 'found');
      pass(trace, 'signature', 'valid');
    }
    if (rejection.code === 'token-expired' && err instanceof errors.JWTExpired) {
      identityFromClaims(err.payload as JWTPayload, issuer, rules, nowMs, undefined, id ?? sha256Hex(token), token);
    }
    throw rejection;
  }
}

async function verifyWithAnyKey(token: string, issuer: Issuer, options: JWTVerifyOptions) {
  try {
    return await jwtVerify(token, issuer.key, options);
  } catch (err) {
    // A JWKS with several keys that fit a token without `kid`: try each, as jose leaves that to the caller.
    if (!(err instanceof errors.JWKSMultipleMatchingKeys)) throw err;
    for await (const candidate of err) {
      try {
        return await jwtVerify(token, candidate, options);
      } catch (inner) {
        if (!(inner instanceof errors.JWSSignatureVerificationFailed)) throw inner;
      }
    }
    throw err;
  }
}

/** First clock time (ms) at which jose would refuse this token, mirroring its rounding; capped at `nowMs + maxTtl`. */
export function validUntil(payload: JWTPayload, issuer: Issuer, nowMs: number, toleranceSeconds: number, maxTtl: number): number {
  let until = Number.POSITIVE_INFINITY;
  // jose: expired when exp <= floor(now/1000) - tolerance.
  if (payload.exp !== undefined) until = Math.ceil(payload.exp + toleranceSeconds) * 1000;
  // jose: too old when floor(now/1000) - iat - tolerance > maxTokenAge.
  if (issuer.maxTokenAge !== undefined && payload.iat !== undefined) {
    until = Math.min(until, (Math.floor(payload.iat + issuer.maxTokenAge + toleranceSeconds) + 1) * 1000);
  }
  return Math.min(until, nowMs + maxTtl);
}
