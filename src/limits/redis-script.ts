import type { RevocationGate } from '../revocation/check.js';
import type { Hit } from './policy.js';
import type { LimitVerdict } from './types.js';

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
export const HIT_LUA = `
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

/** What one request of a batch asks of the script. */
export interface BatchRequest {
  readonly hits: readonly Hit[];
  readonly gate: RevocationGate | undefined;
}

/**
 * A batch as the script takes it: KEYS (the distinct buckets, then the distinct gate keys)
 * followed by ARGV, in one array (spread into a call, tens of thousands of requests in a
 * turn overflowed the stack).
 */
export function packBatch(batch: readonly BatchRequest[], prefix: string, now: number | ''): { numKeys: number; list: (string | number)[] } {
  const keys: string[] = [];
  const index = new Map<string, number>();
  const perKey: (string | number)[] = [];
  const bucketOf = (h: Hit): number => {
    const key = `${prefix}${h.policy.name}:${h.bucket}`;
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
  const bucketKeys = keys.length;
  const list: (string | number)[] = [...keys, ...gateKeys];
  const numKeys = list.length;
  list.push(now, bucketKeys);
  for (const v of perKey) list.push(v);
  list.push(perRequest.join(','));
  return { numKeys, list };
}

/**
 * The verdicts in the script's answer: per request its answer, then `remaining,
 * retryAfterMs` per bucket, read in place (verdictOf's rule: the bucket with the fewest
 * left, or the longest wait).
 */
export function readVerdicts(batch: readonly BatchRequest[], out: readonly unknown[]): LimitVerdict[] {
  const verdicts: LimitVerdict[] = [];
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
    verdicts.push({
      admitted,
      policy: p.hits[best]!.policy,
      remaining: admitted ? Number(out[first + 2 * best]) : 0,
      retryAfterMs: admitted ? 0 : Number(out[first + 2 * best + 1]),
      revoked: p.gate === undefined ? undefined : answer === -1,
    });
  }
  return verdicts;
}
