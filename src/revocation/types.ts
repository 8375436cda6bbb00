import type { RedisTurn } from './redis-turn.js';
import type { RevocationGate } from './check.js';
import type { Identity } from '../authn/types.js';

/** What a revocation check needs to know about a verified credential. */
export type RevocationSubjectRef = Pick<Identity, 'revocationId' | 'subject' | 'issuedAt' | 'externalRevocationKeys'>;

/**
 * An invalidation: a credential (`id`) was revoked or its record changed, or every
 * credential of a subject issued before `before` (`subject`) was revoked. Caches of
 * verified identities evict on it.
 */
export type InvalidationEvent =
  | { readonly kind: 'id'; readonly revocationId: string }
  | { readonly kind: 'subject'; readonly subject: string; readonly before: number }
  /** Credentials were added to the store: refusals remembered for unknown ones are stale. */
  | { readonly kind: 'added' }
  /** Invalidations may have been missed (a lost connection): every cached identity must go. */
  | { readonly kind: 'all' };

export type InvalidationListener = (ev: InvalidationEvent) => void;

/**
 * Where revocation state lives at request time (docs/reference/revocation.md). The durable record is the key
 * store; a RevocationStore is the fast, fleet-wide view of it.
 */
export interface RevocationStore {
  /**
   * True when the credential is revoked. When the store cannot tell it throws (or
   * rejects with) GatewayError `revocation-unavailable` carrying a `retry-after` header,
   * unless configured with `onError: 'allow'`, in which case it answers from what it
   * knows and logs. In-process stores answer synchronously (a boolean, not a Promise),
   * so callers should only `await` when they get a thenable.
   */
  isRevoked(identity: RevocationSubjectRef): boolean | Promise<boolean>;
  /**
   * Marks one credential revoked. The marker expires at `until` (ms since the epoch; plus
   * the store's expiry grace), when the credential would have expired anyway; `undefined`
   * keeps it for good.
   */
  revoke(revocationId: string, until: number | undefined): Promise<void>;
  /**
   * Revokes every credential of `subject` issued before `before` (ms). A newer `before`
   * always wins over an older one, whatever order the calls arrive in. With `until` the
   * entry may be forgotten after that time (the latest expiry of any credential it covers).
   */
  revokeSubject(subject: string, before: number, until?: number): Promise<void>;
  /**
   * Tells every instance, this one included, that a credential's record changed without a
   * revocation (a rotation's grace, an update): cached identities of it are dropped and
   * re-read. Nothing is marked revoked.
   */
  evict(revocationId: string): Promise<void>;
  /** Invalidations from any instance, this one included: evict caches. Returns an unsubscribe function. */
  onInvalidate(listener: InvalidationListener): () => void;
  /** Whether checks can currently be answered from a live, up-to-date view (for `/readyz`). */
  ready(): boolean;
  /** Redis only: the command connection's turns, which the rate limits share (one write, one round trip per turn). */
  readonly turn?: RedisTurn;
  /** Redis only: the check of `identity` as the keys it reads (see RevocationCheck.gate). */
  gate?(identity: RevocationSubjectRef): RevocationGate | undefined;
  /** Resolves true once `ready()`, false when `timeoutMs` passes first. Never rejects. */
  waitReady(timeoutMs: number): Promise<boolean>;
  close(): Promise<void>;
}

/** A set of revocations as read from the durable store. */
export interface RevocationSnapshot {
  ids: Array<{ revocationId: string; until?: number | undefined }>;
  subjects: Array<{ subject: string; before: number; until?: number | undefined }>;
  /** Credentials that changed but are not revoked (a rotation's grace, new grants): evict them from caches. */
  changed?: string[];
  /** Credentials were added (an import): forget refusals of unknown ones. */
  added?: boolean;
}

/**
 * The narrow view of the durable store a RevocationStore loads from. The composition
 * root adapts the key store (token_revocations, subject_revocations, keys.revoked_at)
 * to it.
 */
export interface RevocationSource {
  /** Every revocation still in force (entries whose `until` has passed may be left out). */
  loadActive(): Promise<RevocationSnapshot>;
  /** Revocations recorded or changed at or after `ts` (ms since the epoch). */
  changedSince(ts: number): Promise<RevocationSnapshot>;
  /**
   * Stores that every process shares without a server (the embedded file) announce their
   * changes themselves: `apply` gets each one as it is seen (within the store's poll
   * interval), and the whole active set again when some may have been missed. Resolves to
   * an unsubscribe function.
   */
  watch?(apply: (changes: RevocationSnapshot) => void): Promise<() => Promise<void>>;
  /**
   * The store's own change notice (sent on its channel with each write) as revocation
   * entries; throws on a payload that is not one. Lets a listener on that channel apply
   * changes the store announced, an import among them.
   */
  decodeNotice?(payload: string): RevocationSnapshot;
}

/** The part of a pino logger the revocation layer uses. */
export interface RevocationLogger {
  info?(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** Policy when the backing service cannot answer (config `revocation.onError`). */
export type OnRevocationError = 'deny' | 'allow';
