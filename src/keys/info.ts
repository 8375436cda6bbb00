import type { KeyRateLimit, KeyRecord, NewKey } from '../store/types.js';
import { effectiveEnd } from './lifetime.js';

/** Key status as `keys list` shows it. */
export type KeyStatus = 'active' | 'not-yet-valid' | 'expired' | 'revoked' | 'rotating' | 'rotated';

/** A key as listed: everything but secrets and hashes. */
export interface KeyInfo {
  readonly id: string;
  readonly name: string | null;
  readonly subject: string;
  readonly role: string;
  readonly scopes: readonly string[];
  readonly audiences: readonly string[];
  readonly allowedIps: readonly string[];
  /** Imported legacy key (looked up by digest). */
  readonly legacy: boolean;
  readonly refreshable: boolean;
  readonly createdAt: number;
  readonly notBefore: number | null;
  readonly expiresAt: number | null;
  readonly lastUsedAt: number | null;
  readonly revokedAt: number | null;
  readonly successorId: string | null;
  readonly graceUntil: number | null;
  readonly status: KeyStatus;
  /** The key's own rate limit (every route); null: none. */
  readonly rateLimit: KeyRateLimit | null;
  /** Usage credits left to the key's lineage; null: unlimited. */
  readonly remaining: number | null;
}

/** Status of a key at `now`. */
export function keyStatus(k: KeyRecord, now: number): KeyStatus {
  if (k.revokedAt !== null) return k.successorId !== null ? 'rotated' : 'revoked';
  const end = effectiveEnd(k);
  if (k.successorId !== null) return end !== null && now >= end ? 'rotated' : 'rotating';
  if (end !== null && now >= end) return 'expired';
  if (k.notBefore !== null && now < k.notBefore) return 'not-yet-valid';
  return 'active';
}

/** Public view of a stored key at `now`. */
export function keyInfo(k: KeyRecord, now: number): KeyInfo {
  return {
    id: k.id,
    name: k.name,
    subject: k.subject,
    role: k.role,
    scopes: k.scopes,
    audiences: k.audiences,
    allowedIps: k.allowedIps,
    legacy: k.sha256 !== null,
    refreshable: k.refreshHash !== null,
    createdAt: k.createdAt,
    notBefore: k.notBefore,
    expiresAt: k.expiresAt,
    lastUsedAt: k.lastUsedAt,
    revokedAt: k.revokedAt,
    successorId: k.successorId,
    graceUntil: k.graceUntil,
    status: keyStatus(k, now),
    rateLimit: k.rateLimit,
    remaining: k.remaining,
  };
}

/** Public view of a key just inserted: nothing has happened to it yet. */
export function newKeyInfo(k: NewKey, now: number): KeyInfo {
  const { uses, rateLimit, ...rest } = k;
  const record = { ...rest, lastUsedAt: null, revokedAt: null, successorId: null, graceUntil: null, refreshSpentAt: null };
  return keyInfo({ ...record, rateLimit: rateLimit ?? null, remaining: uses ?? null }, now);
}
