import type { GatewayConfig } from '../config/load.js';
import type { Logger } from '../ops/log.js';
import type { UsageCredits } from './credits.js';
import { LocalRateLimiter } from './local.js';
import { RedisRateLimiter } from './redis.js';
import type { RateLimiter } from './types.js';

/**
 * The limiter a gateway counts with: shared by the fleet through Redis when
 * `revocation.redis` is set, else kept in this process. Its backend is restart-only; the
 * policies themselves reload with the config.
 */
export function openLimiter(config: GatewayConfig, logger: Logger, credits?: UsageCredits): RateLimiter {
  const limiter = openCounter(config, logger);
  if (credits === undefined) return limiter;
  return { check: (hits) => limiter.check(hits), connected: () => limiter.connected(), close: () => limiter.close(), credits };
}

function openCounter(config: GatewayConfig, logger: Logger): RateLimiter {
  const local = new LocalRateLimiter(Date.now, config.rateLimits.maxBuckets);
  const url = config.revocation.redis;
  if (url === undefined || url === '') return local;
  let lastLog = 0;
  return new RedisRateLimiter({
    url,
    prefix: `${config.revocation.keyPrefix}rl:`,
    onError: config.rateLimits.onError,
    fallback: local,
    // Connected from the start even when no route has a policy: any key may carry its own
    // limit (`keys create --rate-limit`), and a first check must not go uncounted.
    lazy: false,
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
