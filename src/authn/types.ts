import type { IncomingMessage } from 'node:http';

export type AuthMethod = 'jwt' | 'apiKey';

/**
 * A verified identity: what the credential proved. Immutable once built; cached
 * identities are shared between requests.
 */
export interface Identity {
  readonly method: AuthMethod;
  readonly subject: string;
  /** Role name as the credential states it (may be a role the config does not list). */
  readonly role: string;
  /** Index of the role in `roles` (ascending); -1 when the role is not listed. */
  readonly roleRank: number;
  readonly scopes: readonly string[];
  /** Scopes joined by a space, computed once for the identity header. */
  readonly scopesHeader: string;
  /** Key id (API keys) — public, safe to log and forward. */
  readonly keyId?: string | undefined;
  /**
   * First key of the lineage (API keys that were rotated or refreshed): the key, its
   * rotation successors and refreshed descendants share it. Absent: the key is its own.
   */
  readonly lineage?: string | undefined;
  /** Key audiences, or the token's `aud` values. Empty: none declared. */
  readonly audiences: readonly string[];
  /** CIDR restriction of a key; undefined means any address. */
  readonly allowIp?: ((ip: string) => boolean) | undefined;
  /** When the credential was issued (ms): key creation time or JWT `iat`. */
  readonly issuedAt: number;
  /** When the credential stops being valid (ms), if it does. */
  readonly expiresAt?: number | undefined;
  /**
   * Revocation handle for this exact credential: `key:<id>` for native keys,
   * `legacy:<sha256>` for imported keys, `jti:<jti>` or `tok:<sha256>` for JWTs.
   */
  readonly revocationId: string;
  /**
   * Redis keys the fronted API writes to revoke this token (`revocation.externalKeys`,
   * rendered once at verification); any of them existing revokes it.
   */
  readonly externalRevocationKeys?: readonly string[] | undefined;
  /** Issuer name (JWT) — informational. */
  readonly issuer?: string | undefined;
  /** The key's own rate limit (policy `key`, by credential), on top of the route's policies. */
  readonly rateLimit?: OwnRateLimit | undefined;
  /** The key's lineage has usage credits: each admitted request spends one. */
  readonly credits?: true | undefined;
}

/**
 * A key's own rate limit as the limiters count it: a compiled policy (limits/compile.ts)
 * named `key`, counted by credential. Declared here so that identities stay a leaf type.
 */
export interface OwnRateLimit {
  readonly name: string;
  readonly limit: number;
  readonly windowMs: number;
  readonly by: 'credential';
  /** `RateLimit-Policy` member, built once. */
  readonly header: string;
}

/** A credential as extracted from the request, preamble already stripped. */
export interface Credential {
  readonly kind: AuthMethod;
  readonly value: string;
  /** Where it came from, for messages: `authorization`, a header name, or `query:<name>`. */
  readonly source: string;
}

/** What an authenticator sees of the request. */
export interface AuthContext {
  readonly clientIp: string;
  readonly req?: IncomingMessage | undefined;
}

/**
 * One small interface per credential kind. `authenticate` resolves to an Identity or
 * throws a GatewayError with a 401/503 code. It never returns a partial identity.
 */
export interface Authenticator {
  readonly kind: AuthMethod;
  authenticate(credential: Credential, ctx: AuthContext): Identity | Promise<Identity>;
}
