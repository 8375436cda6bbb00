import type { Clock } from '../clock.js';
import type { ApiKeysConfig } from '../config/schema.js';
import type { KeyRateLimit, KeyStore } from '../store/types.js';
import type { KeyRevocationEvent } from './events.js';
import type { KeyInfo } from './info.js';

export interface KeyServiceOptions {
  readonly store: KeyStore;
  /**
   * `apiKeys` config: prefix, defaultTtl, hash parameters, refresh TTLs, and the
   * failed-attempt limit that also bounds refreshes (default 10 per 60 s per key id).
   */
  readonly config: Pick<ApiKeysConfig, 'prefix' | 'defaultTtl' | 'hash' | 'refresh'> & Partial<Pick<ApiKeysConfig, 'failedAttempts'>>;
  readonly clock?: Clock;
  /** Known roles: when given, a key's role must be one of them. */
  readonly roles?: readonly string[];
  /** Called after each revocation is stored; awaited, its rejection is the caller's error. */
  readonly onRevoke?: (event: KeyRevocationEvent) => void | Promise<void>;
}

export interface CreateKeyOptions {
  readonly subject: string;
  readonly role: string;
  readonly scopes?: readonly string[];
  readonly name?: string | null;
  /** Lifetime from now (ms). Default `defaultTtl` (`refresh.keyTtl` for refreshable keys); null: never expires. */
  readonly expiresIn?: number | null;
  /** The key starts working this long from now (ms). */
  readonly notBeforeIn?: number;
  readonly allowIps?: readonly string[];
  readonly audiences?: readonly string[];
  /** Revoke the subject's other keys with the same name (unnamed keys when no name). */
  readonly replace?: boolean;
  /** Also issue a refresh token. */
  readonly refreshable?: boolean;
  /** The key's own rate limit, on every route (null or left out: none). */
  readonly rateLimit?: KeyRateLimit | null;
  /** Usage credits of the key's lineage (null or left out: unlimited). */
  readonly uses?: number | null;
}

/**
 * What `keys update` changes; a field left out keeps its value. Every field is optional so
 * that further limits (rate, uses) slot in beside these.
 */
export interface UpdateKeyOptions {
  readonly role?: string;
  readonly scopes?: readonly string[];
  /** New lifetime from now (ms); null: never expires. */
  readonly expiresIn?: number | null;
  /** The key's own rate limit; null: none. */
  readonly rateLimit?: KeyRateLimit | null;
  /** Sets (refills) the lineage's usage credits; null: unlimited. */
  readonly uses?: number | null;
}

/** A newly issued key: the only time the plaintext key (and refresh token) exists. */
export interface CreatedKey extends KeyInfo {
  readonly key: string;
  readonly refreshToken?: string;
  readonly refreshExpiresAt?: number;
  /** Ids of keys this creation revoked (`replace`). */
  readonly replaced: readonly string[];
  /** Rotation: the key this one succeeds. */
  readonly rotatedFrom?: string;
}

export interface ImportResult {
  readonly imported: readonly KeyInfo[];
}
