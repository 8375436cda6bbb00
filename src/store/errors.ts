/**
 * Why a store operation failed, as a closed set:
 * - `store-url-invalid`: the URL names no supported store;
 * - `store-unavailable`: the database could not be reached or answered with an error;
 * - `migration-failed`: a migration file is missing, malformed or failed to apply;
 * - `conflict`: the operation's precondition no longer holds (row missing, already revoked, …).
 */
export type StoreErrorCode = 'store-url-invalid' | 'store-unavailable' | 'migration-failed' | 'conflict';

/** Error thrown by `openStore` and the store implementations. */
export class StoreError extends Error {
  override readonly name = 'StoreError';
  readonly code: StoreErrorCode;

  constructor(code: StoreErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
  }
}

export function isStoreError(err: unknown, code?: StoreErrorCode): err is StoreError {
  return err instanceof StoreError && (code === undefined || err.code === code);
}
