import type { SecretVerifier } from '../../keys/hash.js';

/** Wiring of an ApiKeyAuthenticator beyond the config. */
export interface ApiKeyAuthenticatorOptions {
  /** Secret verifier (default argon2); tests inject a counting one. */
  readonly verifier?: SecretVerifier;
  /** Called when a batched `last used` write fails (the times are kept for the next flush). */
  readonly onLastUsedError?: (err: unknown) => void;
  /** Longest time (ms) a proven key/hash pair skips argon2 on re-verification. Default 24h. */
  readonly provenTtl?: number;
  /** Rejections and failure counters kept at most. Default 100 000. */
  readonly limiterMax?: number;
}

/** Counters for `/metrics` and tests. */
export interface ApiKeyStats {
  /** Requests answered from the identity cache: no store access, no argon2. */
  cacheHits: number;
  /** Requests that ran or joined a verification. */
  cacheMisses: number;
  /** Requests that joined a verification already running for the same key. */
  coalesced: number;
  /** Requests refused from the negative cache. */
  negativeHits: number;
  /** Store lookups (by id or digest). */
  storeLookups: number;
  /** Requests that joined a store read of their key id already running (another secret for the same id). */
  sharedLookups: number;
  /** argon2 verifications run. */
  verifications: number;
  /** Re-verifications answered without argon2 because this exact key was proven before. */
  provenReuses: number;
  /** Refusals because a key id or client had too many failed attempts (429). */
  rateLimited: number;
  /** Refusals because the verification queue was full (503). */
  overloaded: number;
  /** Rejected before any store access: malformed key or checksum mismatch. */
  malformed: number;
}
