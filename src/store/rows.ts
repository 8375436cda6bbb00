import { keyRevocationId } from '../revocation/ids.js';
import { StoreError } from './errors.js';
import type { KeyRecord, NewKey, RevokedKey, SubjectRevocation, SubjectRevocationScope, TokenRevocation } from './types.js';

/** Database rows as records and records as statement parameters: the one place columns are named. */
export type Row = Record<string, unknown>;

export function ms(v: unknown): number | null {
  if (v === null || v === undefined) return null;
  if (v instanceof Date) return v.getTime();
  if (typeof v === 'number') return v;
  const t = Date.parse(String(v));
  return Number.isNaN(t) ? null : t;
}

export function msReq(v: unknown): number {
  const t = ms(v);
  if (t === null) throw new StoreError('store-unavailable', 'key store returned a row without a required timestamp');
  return t;
}

export function date(v: number | null | undefined): Date | null {
  return v === null || v === undefined ? null : new Date(v);
}

export function strs(v: unknown): string[] {
  // PostgreSQL returns text[] as an array, SQLite the JSON text it stores.
  const list: unknown = typeof v === 'string' ? JSON.parse(v) : v;
  return Array.isArray(list) ? list.map(String) : [];
}

export function str(v: unknown): string | null {
  return v === null || v === undefined ? null : String(v);
}

export function toKey(r: Row): KeyRecord {
  return {
    id: String(r.id),
    name: str(r.name),
    subject: String(r.subject),
    role: String(r.role),
    scopes: strs(r.scopes),
    audiences: strs(r.audiences),
    allowedIps: strs(r.allowed_ips),
    secretHash: str(r.secret_hash),
    sha256: str(r.sha256),
    createdAt: msReq(r.created_at),
    notBefore: ms(r.not_before),
    expiresAt: ms(r.expires_at),
    lastUsedAt: ms(r.last_used_at),
    revokedAt: ms(r.revoked_at),
    successorId: str(r.successor_id),
    graceUntil: ms(r.grace_until),
    familyId: str(r.family_id),
    refreshHash: str(r.refresh_hash),
    refreshExpiresAt: ms(r.refresh_expires_at),
    refreshSpentAt: ms(r.refresh_spent_at),
    rateLimit: r.rate_limit === null || r.rate_limit === undefined ? null : { limit: Number(r.rate_limit), window: Number(r.rate_window) },
    remaining: num(r.uses_remaining),
  };
}

function num(v: unknown): number | null {
  return v === null || v === undefined ? null : Number(v);
}

/** Keys with their lineage's credits (`uses_remaining`, null: unlimited); append WHERE/ORDER. */
export const SELECT_KEYS = 'SELECT k.*, q.remaining AS uses_remaining FROM keys AS k LEFT JOIN key_quotas AS q ON q.lineage = COALESCE(k.family_id, k.id)';

// A rotated key stops at the end of its grace; any other key at its expiry.
export const EFFECTIVE_END = 'CASE WHEN successor_id IS NOT NULL THEN grace_until ELSE expires_at END';
export const REVOKED_COLUMNS = `id, sha256, subject, revoked_at, ${EFFECTIVE_END} AS effective_end`;

export function toRevoked(r: Row): RevokedKey {
  const sha256 = str(r.sha256);
  const id = String(r.id);
  return { id, revocationId: keyRevocationId({ id, sha256 }), subject: String(r.subject), revokedAt: msReq(r.revoked_at), expiresAt: ms(r.effective_end) };
}

export function toTokenRevocation(r: Row): TokenRevocation {
  return { id: String(r.id), issuer: String(r.issuer), until: ms(r.until), createdAt: msReq(r.created_at) };
}

export function toSubjectRevocation(r: Row): SubjectRevocation {
  return { subject: String(r.subject), scope: String(r.scope) as SubjectRevocationScope, revokedBefore: msReq(r.revoked_before), updatedAt: msReq(r.updated_at) };
}

export const INSERT_KEY = `INSERT INTO keys (id, name, subject, role, scopes, audiences, allowed_ips, secret_hash, sha256,
  created_at, not_before, expires_at, family_id, refresh_hash, refresh_expires_at, rate_limit, rate_window)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)`;

export function keyParams(k: NewKey): unknown[] {
  return [
    k.id, k.name, k.subject, k.role, [...k.scopes], [...k.audiences], [...k.allowedIps], k.secretHash, k.sha256,
    date(k.createdAt), date(k.notBefore), date(k.expiresAt), k.familyId, k.refreshHash, date(k.refreshExpiresAt),
    k.rateLimit?.limit ?? null, k.rateLimit?.window ?? null,
  ];
}
