import type { JWTPayload } from 'jose';
import type { ExternalKeys } from '../../revocation/external-keys.js';
import { formatRevocationId } from '../../revocation/ids.js';
import type { Identity } from '../types.js';
import { rejectToken } from './jose-errors.js';
import type { Issuer } from './issuer.js';
import { pass, type Trace } from './trace.js';

/** A configured claim name, resolved once. */
export interface ClaimPath {
  readonly name: string;
  /** Dotted-path segments, when the name has dots (tried only if no top-level claim has the full name). */
  readonly parts: readonly string[] | undefined;
}

const CONTROL = /[\x00-\x1f\x7f]/;

/** Resolves a configured claim name (`realm.role` reads a nested claim). */
export function claimPath(name: string): ClaimPath {
  return { name, parts: name.includes('.') ? name.split('.') : undefined };
}

export function readClaim(payload: JWTPayload, path: ClaimPath): unknown {
  if (Object.hasOwn(payload, path.name)) return payload[path.name];
  if (path.parts === undefined) return undefined;
  let value: unknown = payload;
  for (const part of path.parts) {
    if (typeof value !== 'object' || value === null || Array.isArray(value) || !Object.hasOwn(value, part)) return undefined;
    value = (value as Record<string, unknown>)[part];
  }
  return value;
}

/** A claim value as it will travel in a header: strings as they are, numbers in decimal. */
export function claimString(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' && Number.isFinite(value)) {
    return Number.isInteger(value) ? BigInt(value).toString() : String(value);
  }
  return undefined;
}

/** Role claim → role name; a list picks its highest-ranked role. Undefined when malformed. */
function roleClaim(value: unknown, rankOf: (role: string) => number): string | undefined {
  if (value === undefined || value === null) return '';
  if (Array.isArray(value)) {
    let best = '';
    let bestRank = Number.NEGATIVE_INFINITY;
    for (const entry of value) {
      const name = claimString(entry);
      if (name === undefined) return undefined;
      const rank = rankOf(name);
      if (rank > bestRank) {
        best = name;
        bestRank = rank;
      }
    }
    return best;
  }
  return claimString(value);
}

const SCOPE_STRING = /^[\t\n\r\x20-\x7e]*$/;
const SCOPE_TOKEN = /^[\x21-\x7e]+$/;

/** Scope claim → list; undefined when malformed (a list entry with spaces would read as two scopes). */
function scopesClaim(value: unknown): string[] | undefined {
  if (value === undefined || value === null) return [];
  if (typeof value === 'string') {
    // Scope tokens are printable ASCII separated by spaces (RFC 6749 §3.3; tabs and line
    // breaks tolerated): a split on any Unicode space would read "read\u00a0admin", one
    // token to its issuer, as two scopes here.
    if (!SCOPE_STRING.test(value)) return undefined;
    return value.split(/[ \t\n\r]+/).filter((s) => s !== '');
  }
  if (!Array.isArray(value)) return undefined;
  const scopes: string[] = [];
  for (const entry of value) {
    const scope = claimString(entry);
    if (scope === undefined || !SCOPE_TOKEN.test(scope)) return undefined;
    scopes.push(scope);
  }
  return scopes;
}

/** What building an Identity needs besides the token and its claims. */
export interface ClaimRules {
  readonly toleranceSeconds: number;
  readonly rankOf: (role: string) => number;
  readonly externalKeys: ExternalKeys | undefined;
}

/** Checks that come after jose's, then maps claims to the Identity. */
export function identityFromClaims(payload: JWTPayload, issuer: Issuer, rules: ClaimRules, nowMs: number, trace: Trace, tokenHash: string, token: string): Identity {
  const nowSeconds = Math.floor(nowMs / 1000);
  const { iat, exp } = payload;
  if (iat !== undefined && iat > nowSeconds + rules.toleranceSeconds) throw rejectToken('iat', 'The token claims to be issued in the future.');
  pass(trace, 'iat', iat === undefined ? 'absent' : `iat ${new Date(iat * 1000).toISOString()}`);

  const subjectValue = readClaim(payload, issuer.subject);
  const subject = claimString(subjectValue);
  if (subject === undefined || subject === '') throw rejectToken('claims', `The token has no usable subject claim "${issuer.subject.name}".`);

  let role = roleClaim(readClaim(payload, issuer.role), rules.rankOf);
  if (role === undefined) throw rejectToken('claims', `The token's role claim "${issuer.role.name}" is not a string.`);
  if (role === '') role = issuer.config.defaultRole ?? '';

  const scopes = scopesClaim(readClaim(payload, issuer.scopes));
  if (scopes === undefined) throw rejectToken('claims', `The token's scope claim "${issuer.scopes.name}" is not a space-separated string or a list of strings.`);

  if (CONTROL.test(subject) || CONTROL.test(role)) throw rejectToken('claims', 'The token carries control characters in its subject or role.');
  if (subject !== subject.trim() || role !== role.trim()) throw rejectToken('claims', 'The token\'s subject or role starts or ends with whitespace.');

  const aud = payload.aud;
  let audiences: readonly string[];
  if (aud === undefined) audiences = [];
  else if (typeof aud === 'string') audiences = [aud];
  else if (Array.isArray(aud) && aud.every((a) => typeof a === 'string')) audiences = aud;
  else throw rejectToken('claims', 'The token\'s "aud" claim is not a string or a list of strings.');

  const jti = payload.jti;
  let revocationId: string;
  if (jti === undefined) revocationId = formatRevocationId({ kind: 'token', sha256: tokenHash });
  else {
    const jtiString = claimString(jti);
    if (jtiString === undefined || jtiString === '') throw rejectToken('claims', 'The token\'s "jti" claim is not a string.');
    revocationId = formatRevocationId({ kind: 'jti', jti: jtiString });
  }
  pass(trace, 'claims', `subject ${JSON.stringify(subject)}, role ${JSON.stringify(role)}, scopes [${scopes.join(' ')}]`);

  return Object.freeze({
    method: 'jwt',
    subject,
    role,
    roleRank: role === '' ? -1 : rules.rankOf(role),
    scopes: Object.freeze(scopes),
    scopesHeader: scopes.join(' '),
    keyId: undefined,
    audiences: Object.freeze([...audiences]),
    allowIp: undefined,
    // Without `iat` the token's issue time is unknown: 0, so a subject-wide revocation covers
    // it (`nbf` says when it becomes valid, not when it was minted, which may be long before).
    issuedAt: (iat ?? 0) * 1000,
    expiresAt: exp === undefined ? undefined : exp * 1000,
    revocationId,
    externalRevocationKeys: rules.externalKeys?.({ token, sha256: tokenHash, jti: claimString(jti), sub: claimString(payload.sub) }),
    issuer: issuer.name,
  } satisfies Identity);
}
