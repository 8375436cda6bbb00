import { DomainError } from '../http/problem.js';
import { isStoreError } from '../store/errors.js';

/** Why a key operation was refused. */
export type KeyServiceErrorCode = 'invalid-argument' | 'not-found' | 'conflict' | 'import-invalid' | 'refresh-invalid' | 'rate-limited';

/** Error of KeyService operations; `problems` lists every bad import line as `FILE:LINE message`. */
export class KeyServiceError extends DomainError {
  override readonly name = 'KeyServiceError';
  readonly code: KeyServiceErrorCode;

  constructor(code: KeyServiceErrorCode, message: string, options?: { problems?: readonly string[]; cause?: unknown; retryAfter?: number }) {
    super(message, options);
    this.code = code;
  }
}

/** An `invalid-argument` refusal. */
export function invalid(message: string): KeyServiceError {
  return new KeyServiceError('invalid-argument', message);
}

/** Rethrows a store conflict as a `conflict` refusal; any other error as it is. */
export function storeFailure(err: unknown): never {
  if (isStoreError(err, 'conflict')) throw new KeyServiceError('conflict', err.message, { cause: err });
  throw err;
}
