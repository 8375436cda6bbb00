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

/**
 * A change that is stored but could not be announced to the gateways (Redis unreachable):
 * `result` is what the operation made (a new key's secret must still reach the operator),
 * `retry` the command that announces it.
 */
export class AnnouncementError<T> extends Error {
  override readonly name = 'AnnouncementError';
  readonly result: T;
  readonly retry: string;

  constructor(result: T, retry: string, cause: unknown) {
    super(`stored, but the gateways could not be told (${(cause as Error)?.message ?? cause}); run "${retry}" once the revocation backend is reachable`, { cause });
    this.result = result;
    this.retry = retry;
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
