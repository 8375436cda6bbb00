import { resolve } from 'node:path';
import { StoreError } from './errors.js';
import type { KeyStore } from './types.js';

export interface OpenStoreOptions {
  /** PostgreSQL pool size (config `store.poolSize`). */
  poolSize?: number;
  /** Directory a relative `pglite://` path is resolved against (default: the working directory). */
  baseDir?: string;
  /** Apply pending migrations before returning (default false). */
  migrate?: boolean;
  /** Errors of idle PostgreSQL connections. */
  onError?: (err: Error) => void;
}

/** What a store URL designates. */
export type StoreLocation =
  | { readonly kind: 'postgres'; readonly url: string }
  | { readonly kind: 'pglite'; readonly dir: string | undefined };

/**
 * Parses a store URL: `postgres://…` / `postgresql://…`, `pglite://memory`, or
 * `pglite://DIR` (`pglite://./data/x` relative, `pglite:///var/lib/x` absolute).
 * Throws StoreError `store-url-invalid` for anything else.
 */
export function parseStoreUrl(url: string, baseDir = process.cwd()): StoreLocation {
  if (/^postgres(ql)?:\/\/./.test(url)) return { kind: 'postgres', url };
  if (url.startsWith('pglite://')) {
    const rest = url.slice('pglite://'.length);
    if (rest === 'memory' || rest === ':memory:') return { kind: 'pglite', dir: undefined };
    if (rest === '') throw new StoreError('store-url-invalid', 'pglite:// needs a directory (pglite://./data/portcullis) or pglite://memory');
    return { kind: 'pglite', dir: resolve(baseDir, rest) };
  }
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1];
  throw new StoreError(
    'store-url-invalid',
    `unsupported store URL ${scheme === undefined ? JSON.stringify(url) : `scheme "${scheme}:"`}: use postgres://…, pglite://DIR or pglite://memory`,
  );
}

/**
 * Opens the key store a URL names, optionally migrating it first. Each backend's module is
 * loaded only when its URL is opened: a gateway on PostgreSQL never loads PGlite (its
 * PostgreSQL-in-WASM bundle), one on PGlite never loads the `pg` driver for the store.
 */
export async function openStore(url: string, opts: OpenStoreOptions = {}): Promise<KeyStore> {
  const loc = parseStoreUrl(url, opts.baseDir);
  const store =
    loc.kind === 'postgres'
      ? (await import('./postgres.js')).openPostgresStore(loc.url, {
          ...(opts.poolSize === undefined ? {} : { poolSize: opts.poolSize }),
          ...(opts.onError === undefined ? {} : { onError: opts.onError }),
        })
      : await (await import('./pglite.js')).openPgliteStore(loc.dir);
  if (opts.migrate === true) {
    try {
      await store.migrate();
    } catch (err) {
      await store.close().catch(() => undefined);
      throw err;
    }
  }
  return store;
}
