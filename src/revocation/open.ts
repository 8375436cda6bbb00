import type { Clock } from '../clock.js';
import type { RevocationConfig } from '../config/schema.js';
import { MemoryRevocationStore } from './memory.js';
import type { RevocationLogger, RevocationSource, RevocationStore } from './types.js';

/** Inputs of {@link openRevocation}. */
export interface OpenRevocationOptions {
  config: RevocationConfig;
  /** The key store's URL (`postgres://…`, `sqlite://…`); decides the Redis-less backend. */
  databaseUrl?: string | undefined;
  /** The durable record, adapted from the key store. Required for PostgreSQL without Redis. */
  source?: RevocationSource | undefined;
  logger: RevocationLogger;
  clock?: Clock | undefined;
  /** PostgreSQL channel override (tests, or fleets sharing one database). */
  channel?: string | undefined;
  /** Expiry grace override (default two minutes, see `DEFAULT_EXPIRY_GRACE_MS`). */
  expiryGraceMs?: number | undefined;
  /** Called on every check the backend could not answer (e.g. to count revocation errors). */
  onCheckFailure?: ((err: unknown) => void) | undefined;
}

/** Which backend {@link openRevocation} picks for a configuration. */
export type RevocationBackend = 'redis' | 'pg-notify' | 'memory';

/**
 * Redis when configured, else LISTEN/NOTIFY on PostgreSQL, else an in-process set kept
 * current from the embedded store's notices (docs/reference/revocation.md).
 */
export function revocationBackend(config: RevocationConfig, databaseUrl: string | undefined): RevocationBackend {
  if (config.redis.trim() !== '') return 'redis';
  if (databaseUrl !== undefined && /^postgres(ql)?:\/\//i.test(databaseUrl)) return 'pg-notify';
  return 'memory';
}

/** How long opening waits for the first load of the revocation set from PostgreSQL. */
const STARTUP_LOAD_MS = 5_000;

/**
 * Opens the revocation store the configuration calls for. Redis returns at once and
 * connects in the background (`ready()` tells when it can answer: it holds no set to load,
 * every check asks it); PostgreSQL's set is loaded first (up to 5 s, then in the background,
 * onError deciding meanwhile); the in-process store is loaded from `source` before it is
 * returned. The Redis and PostgreSQL backends' modules (and their clients) are loaded only
 * when chosen.
 */
export async function openRevocation(options: OpenRevocationOptions): Promise<RevocationStore> {
  const { config, logger, source } = options;
  const common = {
    logger,
    ...(options.clock === undefined ? {} : { clock: options.clock }),
    ...(options.expiryGraceMs === undefined ? {} : { expiryGraceMs: options.expiryGraceMs }),
  };
  switch (revocationBackend(config, options.databaseUrl)) {
    case 'redis': {
      const { RedisRevocationStore } = await import('./redis.js');
      return new RedisRevocationStore({
        ...common,
        url: config.redis.trim(),
        keyPrefix: config.keyPrefix,
        onError: config.onError,
        timeout: config.timeout,
        source,
        onCheckFailure: options.onCheckFailure,
      });
    }
    case 'pg-notify': {
      if (source === undefined) {
        throw new TypeError('openRevocation: a RevocationSource is required for PostgreSQL without Redis');
      }
      const { PgNotifyRevocationStore } = await import('./pg-notify.js');
      const store = new PgNotifyRevocationStore({
        ...common,
        connectionString: options.databaseUrl!,
        source,
        onError: config.onError,
        staleAfterMs: config.timeout,
        onCheckFailure: options.onCheckFailure,
        ...(options.channel === undefined ? {} : { channel: options.channel }),
      });
      // Load the active set before anything is served on it: a gateway (or a worker
      // replaced) that listened first would judge its first requests on an empty set, which
      // onError: allow serves. When PostgreSQL does not answer, onError decides meanwhile.
      await store.waitReady(STARTUP_LOAD_MS);
      return store;
    }
    case 'memory': {
      const store = new MemoryRevocationStore(common);
      if (source === undefined) return store;
      // Subscribe before loading, so a change committed during the load is not missed.
      if (source.watch !== undefined) store.closeWith(await source.watch((changes) => store.load(changes, true)));
      store.load(await source.loadActive(), false);
      return store;
    }
  }
}
