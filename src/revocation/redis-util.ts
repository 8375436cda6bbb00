/** Throws the first error of a pipeline's results. */
export function throwFirst(results: Array<[Error | null, unknown]> | null): void {
  if (results === null) throw new Error('pipeline aborted');
  for (const [err] of results) if (err) throw err;
}

/** An error as a log field: its message and code. */
export function errInfo(err: unknown): { message: string; code?: string } {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return typeof code === 'string' ? { message: err.message, code } : { message: err.message };
  }
  return { message: String(err) };
}
