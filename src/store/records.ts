/** Revocation records as the store keeps and announces them (re-exported by store/types.ts). */

/** One JWT revocation (by `jti`, or by token digest when the token has none). */
export interface TokenRevocation {
  /** The `jti`, or `sha256:<hex>` of the token. */
  readonly id: string;
  /** Issuer (`iss`) the jti belongs to; '' for digests. */
  readonly issuer: string;
  /** When the token would have expired anyway; null: keep forever. */
  readonly until: number | null;
  readonly createdAt: number;
}

/**
 * Which credentials of a subject a subject-wide revocation covers: its API keys (and
 * their refresh tokens), its JWTs, or both.
 */
export type SubjectRevocationScope = 'keys' | 'tokens' | 'all';

/**
 * Subject-wide revocation: every credential of the subject (within `scope`) issued
 * before `revokedBefore` is revoked. One row per (subject, scope); a later revocation
 * moves `revokedBefore` forward, never back.
 */
export interface SubjectRevocation {
  readonly subject: string;
  readonly scope: SubjectRevocationScope;
  readonly revokedBefore: number;
  /** When this row was last written (the catch-up cursor). */
  readonly updatedAt: number;
}

/** A revoked key as the revocation layer needs it (for markers and catch-up). */
export interface RevokedKey {
  readonly id: string;
  /** `key:<id>` or `legacy:<sha256>`: the Identity's `revocationId`. */
  readonly revocationId: string;
  readonly subject: string;
  readonly revokedAt: number;
  /** When the key would have stopped working anyway (null: never). */
  readonly expiresAt: number | null;
}

/**
 * Message published on {@link REVOCATION_CHANNEL} (PostgreSQL `NOTIFY`; SQLite: a row of
 * the notices table; in the same transaction as the durable write) whenever a revocation
 * is recorded or keys change. Every gateway hears it (on PostgreSQL through
 * PgNotifyRevocationStore's LISTEN) and evicts caches on it; after a lost connection it
 * catches up with the `…Since` reads.
 */
export type RevocationNotice =
  | { readonly kind: 'key'; readonly id: string; readonly revocationId: string; readonly subject: string; readonly at: number; readonly expiresAt: number | null }
  | { readonly kind: 'subject'; readonly subject: string; readonly scope: SubjectRevocationScope; readonly revokedBefore: number; readonly at: number }
  | { readonly kind: 'token'; readonly id: string; readonly issuer: string; readonly until: number | null; readonly at: number }
  /** A key still working but changed (rotated with a grace): caches drop it and read it again. */
  | { readonly kind: 'changed'; readonly id: string; readonly revocationId: string; readonly subject: string; readonly at?: number }
  /** Keys were imported: a refusal remembered for a key not found may be wrong now. */
  | { readonly kind: 'added'; readonly count: number };

/**
 * The channel carrying {@link RevocationNotice} JSON payloads: the one PostgreSQL channel
 * gateways listen on (which also carries the revocation layer's own messages), and the
 * SQLite notices' channel.
 */
export const REVOCATION_CHANNEL = 'portcullis_revocation';

/** Callbacks of a {@link KeyStore.listen} subscription. */
export interface ListenHandlers {
  onMessage(payload: string): void;
  /**
   * The listening connection was lost and is re-established: notifications may have been
   * missed in between, so the listener should run a catch-up read.
   */
  onReconnect?(): void;
  /** The connection failed (it is retried in the background). */
  onError?(err: Error): void;
}
