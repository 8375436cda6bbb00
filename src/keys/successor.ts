import type { KeyRecord, NewKey } from '../store/types.js';

/**
 * The record that replaces `old` (rotation, refresh): the same holder and grants under a
 * new id and secret, valid from `now`; lifetime and refresh fields as the caller decides.
 */
export function successorOf(
  old: KeyRecord,
  id: string,
  secretHash: string,
  now: number,
  rest: Pick<NewKey, 'expiresAt' | 'familyId' | 'refreshHash' | 'refreshExpiresAt'>,
): NewKey {
  return {
    id,
    name: old.name,
    subject: old.subject,
    role: old.role,
    scopes: old.scopes,
    audiences: old.audiences,
    allowedIps: old.allowedIps,
    secretHash,
    sha256: null,
    createdAt: now,
    notBefore: null,
    // Same lineage, same limits: the successor's rate limit is the old key's.
    rateLimit: old.rateLimit,
    ...rest,
  };
}
