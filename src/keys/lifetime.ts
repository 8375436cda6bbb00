import type { KeyRecord } from '../store/types.js';

/** When a key stops working: a rotated key at the end of its grace, any other at its expiry. */
export function effectiveEnd(k: Pick<KeyRecord, 'successorId' | 'graceUntil' | 'expiresAt'>): number | null {
  return k.successorId !== null ? k.graceUntil : k.expiresAt;
}
