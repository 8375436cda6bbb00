import type { RevocationGate } from '../revocation/check.js';
import type { Hit } from './policy.js';
import type { LimitVerdict } from './types.js';

/**
 * The sliding-window rule of `window.ts`, run inside Redis for a whole batch of requests
 * so the fleet shares every bucket atomically. Each distinct bucket of the batch is read
 * once and what the batch added is written once; requests that ask the same thing (the same
 * buckets and revocation gate, as a hot credential's requests of one turn do) travel and are
 * decided as one group, in constant time: a hot key costs one HGETALL and one HINCRBY per
 * batch, and the script's work grows with the distinct requests of a turn, not with all of them.
 *
 * KEYS: the batch's distinct bucket keys, then its revocation gates' keys. ARGV: now in ms
 * ('' = Redis's own clock, one clock for the whole fleet); the number of bucket keys and
 * per bucket key `limit, windowMs`; then one argument of comma-separated integers: the
 * number of groups and per group its number of requests, its bucket count and their key
 * indexes (1-based), then its revocation gate: the number of keys whose existence revokes,
 * their indexes, the index of the subject's "issued before" key (0: none) and the
 * credential's issue time. A group whose credential is revoked is not counted.
 * Answers per group: how many of its requests are admitted (the first ones; -1: revoked),
 * then per bucket `limit - used` before the group and the wait once the group is counted
 * (0 while the bucket has room).
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
-- Gate keys are read once per batch (a hot credential's groups share them).
local present, stamp = {}, {}
local out = {}
-- The groups, packed in one argument of comma-separated integers (one argument instead
-- of a dozen per request: less for the client to write and for Redis to read).
local q = {}
for v in string.gmatch(ARGV[a], '[^,]+') do q[#q + 1] = tonumber(v) end
local p = 2
for _ = 1, q[1] do
  local c, n = q[p], q[p + 1]
  local first = p + 2
  p = first + n
  local revoked = false
  local gn = q[p]; p = p + 1
  for g = p, p + gn - 1 do
    if not revoked then
      local i = q[g]
      local v = present[i]
      if v == nil then v = redis.call('EXISTS', KEYS[i]) == 1; present[i] = v end
      revoked = v
    end
  end
  p = p + gn
  local sk, issued = q[p], q[p + 1]; p = p + 2
  if sk > 0 and not revoked then
    local v = stamp[sk]
    if v == nil then v = tonumber(redis.call('GET', KEYS[sk])) or false; stamp[sk] = v end
    if v and issued < v then revoked = true end
  end
  local admit = c
  if revoked then admit = -1 else
    for b = first, first + n - 1 do
      local room = limit[q[b]] - used[q[b]]
      if room < admit then admit = room end
    end
    if admit < 0 then admit = 0 end
  end
  out[#out + 1] = admit
  local at = #out
  for b = first, first + n - 1 do
    local k = q[b]
    out[#out + 1] = limit[k] - used[k]
    out[#out + 1] = 0
    if admit > 0 then used[k] = used[k] + admit; added[k] = added[k] + admit end
  end
  if admit < c then
    for b = 0, n - 1 do
      local k = q[first + b]
      if used[k] >= limit[k] then out[at + 2 * b + 2] = retry(k) end
    end
  end
end
for k = 1, nk do
  if added[k] > 0 then
    -- A new slot (its count is all this batch added) renews the key's life: it must
    -- outlive its newest slot's last window, which starts no later than now.
    if redis.call('HINCRBY', KEYS[k], string.format('%d', math.floor(now / size[k])), added[k]) == added[k] then
      redis.call('PEXPIRE', KEYS[k], window[k] + size[k])
    end
  end
end
return out
`;

/** What one request of a batch asks of the script. */
export interface BatchRequest {
  readonly hits: readonly Hit[];
  readonly gate: RevocationGate | undefined;
}

/** A packed batch: the script's keys and arguments, and which requests each group holds. */
export interface PackedBatch {
  readonly numKeys: number;
  readonly list: (string | number)[];
  /** Per group, the indexes of its requests in the batch, in order. */
  readonly groups: readonly (readonly number[])[];
}

/**
 * A batch as the script takes it: KEYS (the distinct buckets, then the distinct gate keys)
 * followed by ARGV, in one array (spread into a call, tens of thousands of requests in a
 * turn overflowed the stack). Requests whose packed form is the same (the same buckets and
 * revocation gate) form one group, in the order each group first appears: the requests of
 * one turn arrived together, and the script decides them group after group.
 */
export function packBatch(batch: readonly BatchRequest[], prefix: string, now: number | ''): PackedBatch {
  const groups = groupAlike(batch);
  const keys: string[] = [];
  const index = new Map<string, number>();
  const perKey: (string | number)[] = [];
  const bucketOf = (h: Hit): number => {
    // The window is part of the bucket (see LocalRateLimiter): a changed window starts afresh.
    const key = `${prefix}${h.policy.name}:${h.policy.windowMs}:${h.bucket}`;
    let i = index.get(key);
    if (i === undefined) {
      keys.push(key);
      i = keys.length;
      index.set(key, i);
      perKey.push(h.policy.limit, h.policy.windowMs);
    }
    return i;
  };
  const shapes = groups.map((g) => batch[g[0]!]!.hits.map(bucketOf));
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
  const packed: (string | number)[] = [groups.length];
  for (let i = 0; i < groups.length; i++) {
    const ks = shapes[i]!;
    packed.push(groups[i]!.length, ks.length, ...ks);
    const g = batch[groups[i]![0]!]!.gate;
    if (g === undefined) packed.push(0, 0, 0);
    else {
      packed.push(g.present.length);
      for (const k of g.present) packed.push(gateOf(k));
      packed.push(gateOf(g.subject), g.issuedAt);
    }
  }
  const bucketKeys = keys.length;
  const list: (string | number)[] = [...keys, ...gateKeys];
  const numKeys = list.length;
  list.push(now, bucketKeys);
  for (const v of perKey) list.push(v);
  list.push(packed.join(','));
  return { numKeys, list, groups };
}

/**
 * The batch's requests in groups of those that ask the same, in the order each group first
 * appears, compared by value (a hot credential's requests of a turn ask the same; most
 * turns hold one group or a few).
 */
function groupAlike(batch: readonly BatchRequest[]): number[][] {
  const groups: number[][] = [];
  const byFirst = new Map<string, number[][]>();
  let last: number[] | undefined;
  for (let r = 0; r < batch.length; r++) {
    const p = batch[r]!;
    if (last !== undefined && sameAsk(batch[last[0]!]!, p)) {
      last.push(r);
      continue;
    }
    const first = p.hits[0]?.bucket ?? '';
    const candidates = byFirst.get(first);
    last = candidates?.find((g) => sameAsk(batch[g[0]!]!, p));
    if (last !== undefined) {
      last.push(r);
      continue;
    }
    last = [r];
    groups.push(last);
    if (candidates === undefined) byFirst.set(first, [last]);
    else candidates.push(last);
  }
  return groups;
}

/** Whether two requests ask the script the same: the same buckets of the same policies, and the same revocation gate. */
function sameAsk(a: BatchRequest, b: BatchRequest): boolean {
  if (a.hits.length !== b.hits.length) return false;
  for (let i = 0; i < a.hits.length; i++) {
    if (a.hits[i]!.policy !== b.hits[i]!.policy || a.hits[i]!.bucket !== b.hits[i]!.bucket) return false;
  }
  const x = a.gate;
  const y = b.gate;
  if (x === undefined || y === undefined) return x === y;
  if (x.issuedAt !== y.issuedAt || x.subject !== y.subject || x.present.length !== y.present.length) return false;
  for (let i = 0; i < x.present.length; i++) if (x.present[i] !== y.present[i]) return false;
  return true;
}

/**
 * The verdicts in the script's answer, per group: how many of its requests were admitted,
 * then per bucket `limit - used` before the group and the wait once it was counted. Request
 * `i` of a group is decided as the rule decides it one by one (verdictOf's rule: the bucket
 * with the fewest left, or the longest wait).
 */
export function readVerdicts(batch: readonly BatchRequest[], groups: readonly (readonly number[])[], out: readonly unknown[]): LimitVerdict[] {
  const verdicts = new Array<LimitVerdict>(batch.length);
  let at = 0;
  for (const members of groups) {
    const p = batch[members[0]!]!;
    const answer = Number(out[at]);
    const first = at + 1;
    const n = p.hits.length;
    at = first + 2 * n;
    const room = (b: number): number => Number(out[first + 2 * b]);
    const wait = (b: number): number => Number(out[first + 2 * b + 1]);
    // Admitted: the bucket with the fewest left (the same one for every admitted request).
    let fewest = 0;
    for (let b = 1; b < n; b++) if (room(b) < room(fewest)) fewest = b;
    // Refused or revoked: the bucket with the longest wait once the group was counted.
    let longest = 0;
    for (let b = 1; b < n; b++) if (wait(b) > wait(longest)) longest = b;
    const revoked = p.gate === undefined ? undefined : answer === -1;
    for (let i = 0; i < members.length; i++) {
      const admitted = i < answer;
      verdicts[members[i]!] = admitted
        ? { admitted, policy: p.hits[fewest]!.policy, remaining: room(fewest) - i - 1, retryAfterMs: 0, revoked }
        : { admitted, policy: p.hits[longest]!.policy, remaining: 0, retryAfterMs: wait(longest), revoked };
    }
  }
  return verdicts;
}
