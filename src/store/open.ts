import { resolve } from 'node:path';
import { StoreError } from './errors.js';
import type { KeyStore } from './types.js';

export interface OpenStoreOptions {
  /** PostgreSQL pool size (config `store.poolSize`). */
  poolSize?: number;
  /** Directory a relative `sqlite://` path is resolved against (default: the working directory). */
  baseDir?: string;
  /** Apply pending migrations before returning (default false). */
  migrate?: boolean;
  /** Errors of idle PostgreSQL connections. */
  onError?: (err: Error) => void;
}

/** What a store URL designates. */
export type StoreLocation =
  | { readonly kind: 'postgres'; readonly url: string }
  | { readonly kind: 'sqlite'; readonly file: string | undefined };

/** The embedded store's URL in the shipped config. */
export const DEFAULT_STORE_URL = 'sqlite://./data/portcullis.db';

const USE = `use postgres://…, sqlite://FILE (e.g. ${DEFAULT_STORE_URL}) or sqlite://memory`;

/**
 * Parses a store URL: `postgres://…` / `postgresql://…`, `sqlite://memory`, or
 * `sqlite://FILE` (`sqlite://./data/x.db` relative, `sqlite:///var/lib/x.db` absolute).
 * Throws StoreError `store-url-invalid` for anything else, saying what to write instead.
 */
export function parseStoreUrl(url: string, baseDir = process.cwd()): StoreLocation {
  if (/^postgres(ql)?:\/\/./.test(url)) return { kind: 'postgres', url };
  if (url.startsWith('sqlite://')) {
    const rest = url.slice('sqlite://'.length);
    if (rest === 'memory' || rest === ':memory:') return { kind: 'sqlite', file: undefined };
    if (rest === '' || rest.endsWith('/')) throw new StoreError('store-url-invalid', `sqlite:// needs a file (${DEFAULT_STORE_URL}) or sqlite://memory`);
    return { kind: 'sqlite', file: resolve(baseDir, rest) };
  }
  if (url.startsWith('pglite://')) {
    // The embedded store was PGlite (PostgreSQL in WebAssembly), which held 500 MB and more.
    const dir = url.slice('pglite://'.length);
    const instead = dir === 'memory' || dir === '' ? 'sqlite://memory' : `sqlite://${dir.replace(/\/+$/, '')}/portcullis.db`;
    throw new StoreError('store-url-invalid', `pglite:// is no longer supported: the embedded store is SQLite; write ${instead} (keys in a PGlite directory are not read: create or import them again)`);
  }
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1];
  throw new StoreError('store-url-invalid', `unsupported store URL ${scheme === undefined ? JSON.stringify(url) : `scheme "${scheme}:"`}: ${USE}`);
}

/**
 * Opens the key store a URL names, optionally migrating it first. Each backend's module is
 * loaded only when its URL is opened: a gateway on SQLite never loads the `pg` driver.
 */
export async function openStore(url: string, opts: OpenStoreOptions = {}): Promise<KeyStore> {
  const loc = parseStoreUrl(url, opts.baseDir);
  const store =
    loc.kind === 'postgres'
      ? (await import('./postgres.js')).openPostgresStore(loc.url, {
          ...(opts.poolSize === undefined ? {} : { poolSize: opts.poolSize }),
          ...(opts.onError === undefined ? {} : { onError: opts.onError }),
        })
      : await (await import('./sqlite.js')).openSqliteStore(loc.file);
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
