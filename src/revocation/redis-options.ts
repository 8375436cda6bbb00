import type { Clock } from '../clock.js';
import type { OnRevocationError, RevocationLogger, RevocationSource } from './types.js';

/** Options of the Redis revocation store (redis.ts). */
export interface RedisRevocationOptions {
  /** `redis://` or `rediss://` URL. */
  url: string;
  /** Prefix of every key and of the invalidation channel (default `portcullis:`). */
  keyPrefix?: string;
  /** What a check answers when Redis cannot (default `deny`). */
  onError?: OnRevocationError;
  /** Upper bound on one check in ms (default 1000). */
  timeout?: number;
  logger: RevocationLogger;
  /**
   * The durable record. When given, Redis is re-seeded from it whenever a connection finds
   * Redis without the seed sentinel (a restart without persistence, a flush), and checks
   * are refused until that is done, so a restart can never un-revoke a credential.
   */
  source?: RevocationSource | undefined;
  /** TCP connect timeout in ms (default 2000). */
  connectTimeoutMs?: number;
  /** Cap of the reconnect backoff in ms (default 2000). */
  maxBackoffMs?: number;
  /** Added to every `until` before a marker expires (default {@link DEFAULT_EXPIRY_GRACE_MS}). */
  expiryGraceMs?: number;
  clock?: Clock;
  /** Called on every check that could not be answered (for a metric); must not throw. */
  onCheckFailure?: ((err: unknown) => void) | undefined;
  /**
   * How often the seed sentinel is verified while connected (default 30 s; 0 disables), so
   * a flush or an eviction without a reconnect is also repaired. Only with a `source`.
   */
  seedCheckIntervalMs?: number;
  /** Bound on one read of the durable record when seeding (default 30 s). */
  loadTimeoutMs?: number;
}
