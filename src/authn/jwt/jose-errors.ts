import { errors } from 'jose';
import { GatewayError } from '../../http/problem.js';

/**
 * The checks a bearer JWT goes through, in the order they are evaluated. `explain`
 * reports them by these names, and every rejection names the one that failed.
 */
export const JWT_CHECKS = [
  'size',
  'format',
  'header',
  'issuer',
  'algorithm',
  'key',
  'signature',
  'typ',
  'required-claims',
  'iss',
  'aud',
  'nbf',
  'exp',
  'max-age',
  'iat',
  'claims',
] as const;

export type JwtCheck = (typeof JWT_CHECKS)[number];

export type JwtProblemCode = 'token-invalid' | 'token-expired';

/**
 * A rejected JWT: a GatewayError (401 `token-invalid` or `token-expired`) that also
 * names the check that failed, for logs and `explain`. The detail never says why a
 * signature did not verify beyond "it did not".
 */
export class JwtRejection extends GatewayError {
  readonly check: JwtCheck;
  declare readonly code: JwtProblemCode;

  constructor(code: JwtProblemCode, check: JwtCheck, detail: string, cause?: unknown) {
    super(code, detail, cause === undefined ? undefined : { cause });
    this.check = check;
  }
}

/** A `token-invalid` rejection for a check of our own (not one jose performed). */
export function rejectToken(check: JwtCheck, detail: string, cause?: unknown): JwtRejection {
  return new JwtRejection('token-invalid', check, detail, cause);
}

/**
 * jose error codes this adapter knows. jose types `code` as a plain string, so the
 * closed set is kept here and anything else falls through to a generic rejection.
 */
type JoseCode =
  | typeof errors.JWTExpired.code
  | typeof errors.JWTClaimValidationFailed.code
  | typeof errors.JOSEAlgNotAllowed.code
  | typeof errors.JOSENotSupported.code
  | typeof errors.JWSSignatureVerificationFailed.code
  | typeof errors.JWSInvalid.code
  | typeof errors.JWTInvalid.code
  | typeof errors.JWKSNoMatchingKey.code
  | typeof errors.JWKSMultipleMatchingKeys.code
  | typeof errors.JWKSInvalid.code
  | typeof errors.JWKInvalid.code
  | typeof errors.JWKSTimeout.code;

const CLAIM_CHECK: Readonly<Record<string, JwtCheck>> = { iss: 'iss', aud: 'aud', nbf: 'nbf', exp: 'exp', iat: 'iat', typ: 'typ' };

function claimFailure(err: errors.JWTClaimValidationFailed): JwtRejection {
  const { claim, reason } = err;
  if (reason === 'missing') return rejectToken('required-claims', `The token lacks the required "${claim}" claim.`, err);
  if (reason === 'invalid') return rejectToken(CLAIM_CHECK[claim] ?? 'claims', `The token's "${claim}" claim is not a number.`, err);
  switch (claim) {
    case 'iss':
      return rejectToken('iss', 'The token was not issued by an accepted issuer.', err);
    case 'aud':
      return rejectToken('aud', 'The token is not intended for this audience.', err);
    case 'nbf':
      return rejectToken('nbf', 'The token is not valid yet.', err);
    case 'iat':
      return rejectToken('iat', 'The token claims to be issued in the future.', err);
    case 'typ':
      return rejectToken('typ', 'The token type is not accepted.', err);
    default:
      return rejectToken('claims', `The token's "${claim}" claim is not accepted.`, err);
  }
}

/**
 * The one mapping from jose's errors to ours: `token-expired` when jose reports an
 * expiry (`exp`, or `iat` older than `maxTokenAge`), `token-invalid` for everything
 * else — including errors that are not jose's (a key of the wrong type, say), which
 * keep the original as `cause` for the log but never reach the client's detail.
 */
export function fromJoseError(err: unknown): JwtRejection {
  if (err instanceof JwtRejection) return err;
  const code = (err as { code?: unknown } | null)?.code;
  if (!(err instanceof errors.JOSEError)) return rejectToken('signature', 'The token could not be verified.', err);
  switch (code as JoseCode) {
    case 'ERR_JWT_EXPIRED': {
      const e = err as errors.JWTExpired;
      return e.claim === 'iat'
        ? new JwtRejection('token-expired', 'max-age', 'The token is older than the maximum age accepted.', err)
        : new JwtRejection('token-expired', 'exp', 'The token has expired.', err);
    }
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      return claimFailure(err as errors.JWTClaimValidationFailed);
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
    case 'ERR_JOSE_NOT_SUPPORTED':
      return rejectToken('algorithm', "The token's algorithm is not accepted for its issuer.", err);
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return rejectToken('signature', 'The token signature is not valid.', err);
    case 'ERR_JWS_INVALID':
    case 'ERR_JWT_INVALID':
      return rejectToken('format', 'The token is malformed.', err);
    case 'ERR_JWKS_NO_MATCHING_KEY':
      return rejectToken('key', "No signing key of the token's issuer matches the token.", err);
    case 'ERR_JWKS_MULTIPLE_MATCHING_KEYS':
      return rejectToken('key', "The token's issuer has several keys that could match and none verified it.", err);
    case 'ERR_JWKS_INVALID':
    case 'ERR_JWK_INVALID':
    case 'ERR_JWKS_TIMEOUT':
      return rejectToken('key', "The token issuer's signing keys are not available.", err);
    default:
      return rejectToken('signature', 'The token could not be verified.', err);
  }
}
