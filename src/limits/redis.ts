import { Redis } from 'ioredis';
import { GatewayError } from '../http/problem.js';
import { backoff } from '../revocation/support.js';
import type { RevocationGate } from '../revocation/check.js';
import type { RedisTurn } from '../revocation/redis-turn.js';
import { TurnBatch } from '../util/turn-batch.js';
import type { Hit } from './policy.js';
import type { LimitVerdict, RateLimiter } from './types.js';
import type { LocalRateLimiter } from './local.js';

/**
 * The sliding-window rule of `window.ts`, run inside Redis for a whole batch of requests
 * so the fleet shares every bucket atomically. Each distinct bucket of the batch is read
 * once, its requests are decided in order in memory, and what they added is written once:
 * a hot key costs one HGETALL and one HINCRBY per batch, not per request.
 *
 * KEYS: the batch's distinct bucket keys, then its revocation gates' keys. ARGV: now in ms
 * ('' = Redis's own clock, one clock for the whole fleet); the number of bucket keys and
 * per bucket key `limit, windowMs`; then one argument of comma-separated integers: the
 * number of requests and per request its bucket count and their key indexes (1-based), then its
 * revocation gate: the number of keys whose existence revokes, their indexes, the index of
 * the subject's "issued before" key (0: none) and the credential's issue time. A gated
 * request whose credential is revoked is not counted.
 * Answers per request: admitted (1/0, or -1: revoked), then per bucket `remaining, retryAfterMs`.
 */
const HIT_LUA = `
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local nk = tonumber(ARGV[2])
local limit, window, size, used, slots, added = {}, {}, {}, {}, {}, {}
local a = 3
for k = 1, nk do
  local l, w = tonumber(ARGV[a]), tonumber(ARGV[a + 1]); a = a + 2
  local sz = math.max(1, math.floor(w / 10))
  local oldest = math.floor((now - w) / sz)
  local flat = redis.call('HGETALL', KEYS[k])
  local u, s = 0, {}
  for i = 1, #flat, 2 do
    local slot, c = tonumber(flat[i]), tonumber(flat[i + 1])
    if slot < oldest then redis.call('HDEL', KEYS[k], flat[i]) else u = u + c; s[#s + 1] = { slot, c } end
  end
  limit[k], window[k], size[k], used[k], slots[k], added[k] = l, w, sz, u, s, 0
end
-- Gate keys are read once per batch (a hot credential's requests share them).
local present, stamp = {}, {}
local function exists(i)
  local v = present[i]
  if v == nil then v = redis.call('EXISTS', KEYS[i]) == 1; present[i] = v end
  return v
end
local function issuedBefore(i)
  local v = stamp[i]
  if v == nil then v = tonumber(redis.call('GET', KEYS[i])) or false; stamp[i] = v end
  return v
end
local function retry(k)
  local s = {}
  for i, sc in ipairs(slots[k]) do s[i] = sc end
  if added[k] > 0 then s[#s + 1] = { math.floor(now / size[k]), added[k] } end
  table.sort(s, function(x, y) return x[1] < y[1] end)
  local u = used[k]
  for _, sc in ipairs(s) do
    u = u - sc[2]
    if u < limit[k] then return math.max(1, (sc[1] + 1) * size[k] + window[k] - now) end
  end
  return 1
end
local out = {}
-- The requests, packed in one argument of comma-separated integers (one argument instead
-- of a dozen per request: less for the client to write and for Redis to read).
local q, p = {}, 1
for v in string.gmatch(ARGV[a], '[^,]+') do q[#q + 1] = tonumber(v) end
local nr = q[p]; p = p + 1
for r = 1, nr do
  local n = q[p]; p = p + 1
  local ks, admitted = {}, 1
  for b = 1, n do
    local k = q[p]; p = p + 1
    ks[b] = k
    if used[k] >= limit[k] then admitted = 0 end
  end
  local gn = q[p]; p = p + 1
  for g = 1, gn do
    if admitted ~= -1 and exists(q[p + g - 1]) then admitted = -1 end
  end
  p = p + gn
  local sk, issued = q[p], q[p + 1]; p = p + 2
  if sk > 0 and admitted ~= -1 then
    local before = issuedBefore(sk)
    if before and issued < before then admitted = -1 end
  end
  out[#out + 1] = admitted
  for b = 1, n do
    local k = ks[b]
    if used[k] < limit[k] then
      out[#out + 1] = limit[k] - used[k] - 1; out[#out + 1] = 0
    else
      out[#out + 1] = 0; out[#out + 1] = retry(k)
    end
  end
  if admitted == 1 then
    for b = 1, n do
      local k = ks[b]
      used[k] = used[k] + 1; added[k] = added[k] + 1
    end
  end
end
for k = 1, nk do
  if added[k] > 0 then
    redis.call('HINCRBY', KEYS[k], string.format('%d', math.floor(now / size[k])), added[k])
    redis.call('PEXPIRE', KEYS[k], window[k] + size[k])
  end
end
return out
`;

interface Pending {
  readonly hits: readonly Hit[];
  readonly gate: RevocationGate | undefined;
  resolve(v: LimitVerdict): void;
  reject(e: unknown): void;
}

/** Keys then arguments in one array, which the client flattens (never spread into the call: see #send). */
type ScriptedRedis = Redis & { portcullisHit(numKeys: number, keysAndArgs: readonly (string | number)[]): Promise<number[]> };

export interface RedisLimiterOptions {
  url: string;
  /** Key prefix (tests use their own). */
  prefix?: string;
  /** `allow`: while Redis is away each instance enforces the limits alone; `deny`: 503. */
  onError: 'allow' | 'deny';
  /** The in-process limiter used meanwhile with `onError: allow`. */
  fallback: LocalRateLimiter;
  timeoutMs?: number;
  /** Fixed clock for tests; by default Redis's own. */
  now?: () => number;
  onUnavailable?: (err: unknown) => void;
  /** Connect on the first check instead of at once (no route has a policy yet). */
  lazy?: boolean;
  /**
   * The revocation store's command connection and its turns: the script of a turn goes out
   * in the same write as the revocation checks' MGET (one round trip for both). Without it
   * the limiter opens a connection of its own.
   */
  shared?: RedisTurn;
}

/**
 * Rate limits shared by every instance through Redis: the checks of one event-loop turn go
 * out as one script call — one round trip for many requests — and are decided atomically.
 */
export class RedisRateLimiter implements RateLimiter {
  readonly #redis: ScriptedRedis;
  readonly #prefix: string;
  readonly #timeout: number;
  readonly #batch: TurnBatch<Pending>;
  /** The connection is the revocation store's: it is not ours to close. */
  readonly #owned: boolean;
  /** Set while the lazy connection is first being made: checks wait for it. */
  #connecting: Promise<boolean> | undefined;

  constructor(private readonly opts: RedisLimiterOptions) {
    this.#prefix = opts.prefix ?? 'portcullis:rl:';
    this.#timeout = opts.timeoutMs ?? 1_000;
    this.#owned = opts.shared === undefined;
    this.#redis = (opts.shared?.redis ??
      new Redis(opts.url, {
        connectionName: 'portcullis-ratelimit',
        connectTimeout: 2_000,
        retryStrategy: (times: number) => backoff(times - 1, 50, 2_000),
        enableOfflineQueue: false,
        maxRetriesPerRequest: 0,
        autoResendUnfulfilledCommands: false,
        lazyConnect: opts.lazy === true,
      })) as ScriptedRedis;
    this.#batch = new TurnBatch<Pending>((batch) => this.#send(batch), opts.shared?.schedule);
    this.#redis.defineCommand('portcullisHit', { lua: HIT_LUA });
    if (this.#owned) {
      this.#redis.on('error', () => {
        // Reported per failed check through onUnavailable; the connection retries by itself.
      });
    }
  }

  /** Counts only requests whose revocation gate passes, in the same script call. */
  readonly gated = true;

  check(hits: readonly Hit[], gate?: RevocationGate): LimitVerdict | Promise<LimitVerdict> {
    if (this.#redis.status === 'wait' || this.#connecting !== undefined) {
      // The first limit ever checked (a route's policy, or a key's own limit): connect now,
      // and count the checks that arrive meanwhile in Redis once connected — never locally,
      // uncounted by the fleet.
      if (this.#connecting === undefined) {
        this.#redis.connect().catch(() => undefined);
        this.#connecting = this.ready(this.#timeout).finally(() => {
          this.#connecting = undefined;
        });
      }
      return this.#connecting.then((up) => (up ? this.check(hits, gate) : this.#unavailable(hits, new Error('redis did not connect in time'))));
    }
    if (this.#redis.status !== 'ready') return this.#unavailable(hits, new Error(`redis connection ${this.#redis.status}`));
    return new Promise<LimitVerdict>((resolve, reject) => this.#batch.add({ hits, gate, resolve, reject }));
  }

  readonly #send = (batch: Pending[]): void => {
    // KEYS: the buckets first (ARGV says how many), then the revocation gates' keys.
    const keys: string[] = [];
    const index = new Map<string, number>();
    const perKey: (string | number)[] = [];
    const bucketOf = (h: Hit): number => {
      const key = `${this.#prefix}${h.policy.name}:${h.bucket}`;
      let i = index.get(key);
      if (i === undefined) {
        keys.push(key);
        i = keys.length;
        index.set(key, i);
        perKey.push(h.policy.limit, h.policy.windowMs);
      }
      return i;
    };
    const buckets = batch.map((p) => p.hits.map(bucketOf));
    const gateKeys: string[] = [];
    const gateIndex = new Map<string, number>();
    const gateOf = (key: string): number => {
      let i = gateIndex.get(key);
      if (i === undefined) {
        i = gateKeys.push(key) + keys.length;
        gateIndex.set(key, i);
      }
      return i;
    };
    const perRequest: (string | number)[] = [batch.length];
    for (let r = 0; r < batch.length; r++) {
      const ks = buckets[r]!;
      perRequest.push(ks.length, ...ks);
      const g = batch[r]!.gate;
      if (g === undefined) perRequest.push(0, 0, 0);
      else {
        perRequest.push(g.present.length);
        for (const k of g.present) perRequest.push(gateOf(k));
        perRequest.push(gateOf(g.subject), g.issuedAt);
      }
    }
    const args: (string | number)[] = [this.opts.now ? this.opts.now() : '', keys.length, ...perKey, perRequest.join(',')];
    for (const k of gateKeys) keys.push(k);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`redis did not answer within ${this.#timeout} ms`)), this.#timeout);
    });
    // One array, not spread into the call: one client pipelining on one connection puts tens
    // of thousands of requests in a turn, and as call arguments those overflowed the stack —
    // a RangeError out of the turn's callback, which ended the process.
    Promise.race([this.#redis.portcullisHit(keys.length, [...keys, ...args]), timedOut]).then(
      (out) => {
        clearTimeout(timer);
        // Per request: its answer, then `remaining, retryAfterMs` per bucket. The verdict is
        // read in place (verdictOf's rule: the bucket with the fewest left, or the longest wait).
        let at = 0;
        for (const p of batch) {
          const answer = Number(out[at]);
          const first = at + 1;
          const n = p.hits.length;
          at = first + 2 * n;
          const admitted = answer === 1;
          let best = 0;
          for (let i = 1; i < n; i++) {
            const worse = admitted ? Number(out[first + 2 * i]) < Number(out[first + 2 * best]) : Number(out[first + 2 * i + 1]) > Number(out[first + 2 * best + 1]);
            if (worse) best = i;
          }
          p.resolve({
            admitted,
            policy: p.hits[best]!.policy,
            remaining: admitted ? Number(out[first + 2 * best]) : 0,
            retryAfterMs: admitted ? 0 : Number(out[first + 2 * best + 1]),
            revoked: p.gate === undefined ? undefined : answer === -1,
          });
        }
      },
      (err: unknown) => {
        clearTimeout(timer);
        for (const p of batch) {
          const v = this.#unavailable(p.hits, err);
          if (v instanceof Promise) v.catch(p.reject);
          else p.resolve(v);
        }
      },
    );
  };

  #unavailable(hits: readonly Hit[], err: unknown): LimitVerdict | Promise<LimitVerdict> {
    this.opts.onUnavailable?.(err);
    if (this.opts.onError === 'allow') return this.opts.fallback.check(hits);
    return Promise.reject(new GatewayError('rate-limit-unavailable', 'Rate limits could not be checked; retry shortly.', { cause: err, headers: { 'retry-after': '1' } }));
  }

  /** Ready to share limits, or not needed yet (never connected: no route has a policy). */
  connected(): boolean {
    return this.#redis.status === 'ready' || this.#redis.status === 'wait';
  }

  /** Resolves once connected (or false after `timeoutMs`). */
  async ready(timeoutMs = 5_000): Promise<boolean> {
    const until = Date.now() + timeoutMs;
    while (this.#redis.status !== 'ready') {
      if (Date.now() > until) return false;
      await new Promise((r) => setTimeout(r, 10));
    }
    return true;
  }

  async close(): Promise<void> {
    if (this.#owned) this.#redis.disconnect();
    await this.opts.fallback.close();
  }
}
