import type Argon2 from 'argon2';
import { sha256Hex } from '../util/sha256.js';

// The native addon loads on the first hash or verification: a gateway that never sees an
// argon2-hashed key (JWTs only, SHA-256 imports) does not carry it in memory.
let loading: Promise<typeof Argon2> | undefined;
const argon2 = (): Promise<typeof Argon2> => (loading ??= import('argon2').then((m) => m.default));

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
export async function hashSecret(secret: string, params: HashParams = DEFAULT_HASH_PARAMS): Promise<string> {
  const a = await argon2();
  return a.hash(secret, {
    type: a.argon2id,
    memoryCost: params.memoryCost,
    timeCost: params.timeCost,
    parallelism: params.parallelism,
  });
}

/** Checks a secret against a PHC hash; false (never a throw) for a malformed hash. */
export async function verifySecret(hash: string, secret: string): Promise<boolean> {
  const a = await argon2();
  try {
    return await a.verify(hash, secret);
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


const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Lowercase hex SHA-256 of a UUID's 16 bytes, as services that hash UUID keys store them
 * (Go: `sha256.Sum256(id.Bytes())`); undefined when `value` is not a UUID. The hex digits
 * are read in any letter case, as such services parse the key before hashing it.
 */
export function uuidBytesSha256(value: string): string | undefined {
  if (value.length !== 36 || !UUID.test(value)) return undefined;
  return sha256Hex(Buffer.from(value.replaceAll('-', ''), 'hex'));
}
