/**
 * Revocation ids and scoped subjects: the one place their text forms are built and read.
 *
 * A revocation id names one credential in the revocation view and in an Identity:
 * `key:<id>` (native API key), `legacy:<sha256>` (imported key, by its digest),
 * `jti:<jti>` (JWT with a `jti`), `tok:<sha256>` (JWT without one, by the digest of the
 * token). The store keeps JWT revocations as the bare `jti` or `sha256:<hex>`.
 * A scoped subject is a subject in the revocation view, `k:<subject>` for keys and
 * `t:<subject>` for JWTs, so that the two kinds of one subject are revoked apart.
 */

/** One credential, by kind. */
export type RevocationId =
  | { readonly kind: 'key'; readonly keyId: string }
  | { readonly kind: 'legacy'; readonly sha256: string }
  | { readonly kind: 'jti'; readonly jti: string }
  | { readonly kind: 'token'; readonly sha256: string };

/** The kinds a JWT's revocation id can have. */
export type TokenRevocationId = Extract<RevocationId, { kind: 'jti' | 'token' }>;

const PREFIX = { key: 'key:', legacy: 'legacy:', jti: 'jti:', token: 'tok:' } as const;
const SHA256_HEX = /^[0-9a-f]{64}$/;
const STORED_DIGEST = 'sha256:';

/** The text form of a revocation id. */
export function formatRevocationId(id: RevocationId): string {
  switch (id.kind) {
    case 'key':
      return PREFIX.key + id.keyId;
    case 'legacy':
      return PREFIX.legacy + id.sha256;
    case 'jti':
      return PREFIX.jti + id.jti;
    case 'token':
      return PREFIX.token + id.sha256;
  }
}

/**
 * Reads a revocation id; undefined when the text is not one (unknown kind, empty value,
 * or a digest that is not 64 lowercase hex characters).
 */
export function parseRevocationId(text: string): RevocationId | undefined {
  const colon = text.indexOf(':');
  if (colon <= 0 || colon === text.length - 1) return undefined;
  const value = text.slice(colon + 1);
  switch (text.slice(0, colon + 1)) {
    case PREFIX.key:
      return { kind: 'key', keyId: value };
    case PREFIX.jti:
      return { kind: 'jti', jti: value };
    case PREFIX.legacy:
      return SHA256_HEX.test(value) ? { kind: 'legacy', sha256: value } : undefined;
    case PREFIX.token:
      return SHA256_HEX.test(value) ? { kind: 'token', sha256: value } : undefined;
    default:
      return undefined;
  }
}

/** True for the revocation ids of JWTs (`jti:` and `tok:`), without building a union. */
export function isTokenRevocationId(text: string): boolean {
  return text.startsWith(PREFIX.jti) || text.startsWith(PREFIX.token);
}

/** A stored key's revocation id: `key:<id>` when native, `legacy:<sha256>` when imported. */
export function keyRevocationId(key: { readonly id: string; readonly sha256: string | null }): string {
  return key.sha256 === null ? formatRevocationId({ kind: 'key', keyId: key.id }) : formatRevocationId({ kind: 'legacy', sha256: key.sha256 });
}

/** How the store records a JWT revocation: the bare `jti`, or `sha256:<hex>` of the token. */
export function tokenRecordId(id: TokenRevocationId): string {
  return id.kind === 'jti' ? id.jti : STORED_DIGEST + id.sha256;
}

/** The revocation id of a stored JWT revocation (the inverse of {@link tokenRecordId}). */
export function fromTokenRecordId(stored: string): TokenRevocationId {
  const digest = stored.slice(STORED_DIGEST.length);
  if (stored.startsWith(STORED_DIGEST) && SHA256_HEX.test(digest)) return { kind: 'token', sha256: digest };
  return { kind: 'jti', jti: stored };
}

/** Which credentials a scoped subject covers. */
export type SubjectScope = 'keys' | 'tokens';

/** A subject as the revocation view names it. */
export interface ScopedSubject {
  readonly scope: SubjectScope;
  readonly subject: string;
}

const SCOPE_PREFIX = { keys: 'k:', tokens: 't:' } as const;

/** `k:<subject>` or `t:<subject>`. */
export function formatScopedSubject(scope: SubjectScope, subject: string): string {
  return SCOPE_PREFIX[scope] + subject;
}

/** Reads a scoped subject; undefined for any other text. The subject may be empty. */
export function parseScopedSubject(text: string): ScopedSubject | undefined {
  if (text.startsWith(SCOPE_PREFIX.keys)) return { scope: 'keys', subject: text.slice(SCOPE_PREFIX.keys.length) };
  if (text.startsWith(SCOPE_PREFIX.tokens)) return { scope: 'tokens', subject: text.slice(SCOPE_PREFIX.tokens.length) };
  return undefined;
}
