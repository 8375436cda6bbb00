import { Redis, type RedisOptions } from 'ioredis';

/**
 * Keeps `before` the maximum ever written and the expiry the latest ever asked for; a
 * key without expiry stays without. GET-compare-SET in one script so two instances
 * revoking the same subject concurrently cannot let an older timestamp win.
 * KEYS[1] subject key; ARGV[1] before (ms); ARGV[2] expire-at (ms) or '' for never.
 */
export const REVOKE_SUBJECT_LUA = `
local cur = redis.call('GET', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if (not cur) or (tonumber(cur) < tonumber(ARGV[1])) then
  redis.call('SET', KEYS[1], ARGV[1], 'KEEPTTL')
end
if ARGV[2] == '' then
  redis.call('PERSIST', KEYS[1])
elseif ttl ~= -1 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if ttl == -2 or now + ttl < tonumber(ARGV[2]) then
    redis.call('PEXPIREAT', KEYS[1], ARGV[2])
  end
end
return redis.call('GET', KEYS[1])
`;

export type ScriptedRedis = Redis & {
  portcullisRevokeSubject(key: string, before: string, expireAt: string): Promise<string | null>;
};

export type ScriptedPipeline = ReturnType<Redis['pipeline']> & {
  portcullisRevokeSubject(key: string, before: string, expireAt: string): ScriptedPipeline;
};

/** The connection checks and writes go through; subscriptions have their own. */
export function commandConnection(url: string, common: RedisOptions): ScriptedRedis {
  const redis = new Redis(url, {
    ...common,
    connectionName: 'portcullis-revocation',
    // Checks are batched per event-loop turn (MgetBatcher); ioredis's own auto-pipelining
    // batches per tick, which under load is one request, and costs a pipeline each time.
    enableAutoPipelining: false,
    // Fail fast instead of holding requests while Redis is away: the caller decides.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
  }) as ScriptedRedis;
  redis.defineCommand('portcullisRevokeSubject', { numberOfKeys: 1, lua: REVOKE_SUBJECT_LUA });
  return redis;
}
