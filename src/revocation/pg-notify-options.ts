import type { Clock } from '../clock.js';
import type { OnRevocationError, RevocationLogger, RevocationSource } from './types.js';

/** Options of the PostgreSQL LISTEN/NOTIFY revocation store (pg-notify.ts). */
export interface PgNotifyRevocationOptions {
  /** `postgres://` URL of the database that holds the key store. */
  connectionString: string;
  /** The durable record: loaded at start, read again for what was missed after a lost connection. */
  source: RevocationSource;
  /**
   * Channel name (default `REVOCATION_CHANNEL` of store/types, the one the key store announces its
   * changes on: another channel hears only this class's own messages).
   */
  channel?: string;
  /** What a check answers while the instance is not in sync (default `deny`). */
  onError?: OnRevocationError;
  /**
   * How long after losing the listener connection checks still answer from the local set
   * (default 1000 ms): it was complete a moment ago, and a reconnect usually takes less.
   */
  staleAfterMs?: number;
  logger: RevocationLogger;
  clock?: Clock;
  /**
   * The catch-up read after a reconnect asks for changes since the last moment the
   * connection was known alive minus this margin (default 30 s), which absorbs clock
   * differences between instances and transactions that committed late.
   */
  catchUpMarginMs?: number;
  /**
   * How often the listener connection is probed (default 1 s). Without an answer for two
   * intervals plus `staleAfterMs` the revocation set counts as stale (checks fail closed).
   */
  pingIntervalMs?: number;
  /** Reconnect backoff bounds (defaults 100 ms and 5 s). */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** Connect and query timeout of the listener connection (default 5 s). */
  connectTimeoutMs?: number;
  /** `application_name` of the listener connection, visible in pg_stat_activity. */
  applicationName?: string;
  /** Added to every `until` before an entry is forgotten. */
  expiryGraceMs?: number;
  /** Called on every check answered while out of sync (for a metric); must not throw. */
  onCheckFailure?: ((err: unknown) => void) | undefined;
  /** Bound on one read of the durable record (default 30 s); a read that hangs counts as a failed attempt. */
  loadTimeoutMs?: number;
}
