import { hash } from 'node:crypto';

/**
 * Lowercase hex SHA-256 of a UTF-8 string (or of bytes): the cache key of a presented credential, the
 * `tok:` revocation id of a token without `jti`, and how imported legacy keys are stored.
 */
export function sha256Hex(value: string | Uint8Array): string {
  return hash('sha256', value, 'hex');
}
