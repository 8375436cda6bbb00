import { createHash, timingSafeEqual } from 'node:crypto';
import argon2 from 'argon2';

/** argon2id parameters (config `apiKeys.hash`). */
export interface HashParams {
  /** KiB. */
  readonly memoryCost: number;
  readonly timeCost: number;
  readonly parallelism: number;
}

/** OWASP's minimum for argon2id: 19 MiB, 2 iterations, 1 lane. */
export const DEFAULT_HASH_PARAMS: HashParams = Object.freeze({ memoryCost: 19_456, timeCost: 2, parallelism: 1 });

/** Hashes a secret with argon2id; the PHC string carries salt and parameters. */
export function hashSecret(secret: string, params: HashParams = DEFAULT_HASH_PARAMS): Promise<string> {
  return argon2.hash(secret, {
    type: argon2.argon2id,
    memoryCost: params.memoryCost,
    timeCost: params.timeCost,
    parallelism: params.parallelism,
  });
}

/** Checks a secret against a PHC hash; false (never a throw) for a malformed hash. */
export async function verifySecret(hash: string, secret: string): Promise<boolean> {
  try {
    return await argon2.verify(hash, secret);
  } catch {
    return false;
  }
}

/** How secrets are checked against stored hashes; injectable so tests can count runs. */
export interface SecretVerifier {
  verify(hash: string, secret: string): Promise<boolean>;
}

/** The argon2 verifier. */
export const argon2Verifier: SecretVerifier = { verify: verifySecret };

/** Lowercase hex SHA-256 of a UTF-8 string: how legacy keys are stored and looked up. */
export function sha256Hex(value: string): string {
  return createHash('sha256').update(value).digest('hex');
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Lowercase hex SHA-256 of a UUID's 16 bytes, as services that hash UUID keys store them
 * (Go: `sha256.Sum256(id.Bytes())`); undefined when `value` is not a UUID. The hex digits
 * are read in any letter case, as such services parse the key before hashing it.
 */
export function uuidBytesSha256(value: string): string | undefined {
  if (value.length !== 36 || !UUID.test(value)) return undefined;
  return createHash('sha256').update(Buffer.from(value.replaceAll('-', ''), 'hex')).digest('hex');
}

/**
 * Constant-time string equality. Both sides are hashed first so neither the content nor
 * the length of the secret side leaks through timing.
 */
export function safeEqual(a: string, b: string): boolean {
  const da = createHash('sha256').update(a).digest();
  const db = createHash('sha256').update(b).digest();
  return timingSafeEqual(da, db);
}
