import type { GatewayConfig } from '../config/load.js';
import type { RedisTurn } from '../revocation/redis-turn.js';
import { LocalRateLimiter } from './local.js';
import type { RateLimiter } from './types.js';

/** Where the limiter reports Redis being unreachable (the gateway's logger). */
export interface LimiterLog {
  error(obj: object, msg: string): void;
}

/**
 * The limiter a gateway counts with: shared by the fleet through Redis when
 * `revocation.redis` is set, else kept in this process (the Redis client is not even
 * loaded then). Its backend is restart-only; the policies themselves reload with the config.
 */
export async function openLimiter(config: GatewayConfig, logger: LimiterLog, shared?: RedisTurn, fallback?: RateLimiter): Promise<RateLimiter> {
  // `fallback`: what counts while Redis is away with onError: allow (a worker's: the
  // primary's buckets, so the instance's workers still count together).
  const local = fallback ?? new LocalRateLimiter(Date.now, config.rateLimits.maxBuckets);
  const url = config.revocation.redis;
  if (url === undefined || url === '') return local;
  let lastLog = 0;
  const { RedisRateLimiter } = await import('./redis.js');
  return new RedisRateLimiter({
    url,
    prefix: `${config.revocation.keyPrefix}rl:`,
    onError: config.rateLimits.onError,
    fallback: local,
    // The revocation store's connection when it is on Redis: one write per turn for both.
    ...(shared === undefined ? {} : { shared }),
    // No Redis connection for limits until the first limit is checked (a route's policy or
    // a key's own limit); that check waits for the connection, so none goes uncounted.
    lazy: !config.routes.some((r) => r.rateLimit.length > 0),
    timeoutMs: config.revocation.timeout,
    onUnavailable: (err) => {
      const now = Date.now();
      if (now - lastLog < 5_000) return;
      lastLog = now;
      const mode = config.rateLimits.onError === 'allow' ? 'each instance enforces the limits alone meanwhile (onError: allow)' : 'refusing 503 rate-limit-unavailable (onError: deny)';
      logger.error({ err: { message: (err as Error).message } }, `rate limits: redis unreachable; ${mode}`);
    },
  });
}
