// Small statistics over benchmark samples.

export function median(xs) {
  const v = xs.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

export function quantile(xs, q) {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  return v[Math.min(v.length - 1, Math.floor(q * v.length))];
}

export function round(x, digits = 2) {
  if (x === null || x === undefined || !Number.isFinite(x)) return null;
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/**
 * One sample out of several slices of the same target's load: requests and seconds summed,
 * CPU per request weighted by requests, latency percentiles as the request-weighted mean of
 * the slices' (an approximation: percentiles do not add up; the slices are alike in length).
 */
export function mergeSlices(parts) {
  if (parts.length === 1) return parts[0];
  const sum = (f) => parts.reduce((n, p) => n + (f(p) ?? 0), 0);
  const total = sum((p) => p.total);
  const seconds = sum((p) => p.seconds);
  const ok = sum((p) => p.ok);
  const weighted = (f) => (parts.every((p) => typeof f(p) === 'number') && total > 0 ? sum((p) => f(p) * p.total) / total : null);
  const statusCodes = {};
  for (const p of parts) for (const [code, n] of Object.entries(p.statusCodes ?? {})) statusCodes[code] = (statusCodes[code] ?? 0) + n;
  const latencyMs = {};
  for (const q of Object.keys(parts[0].latencyMs ?? {})) latencyMs[q] = q === 'max' ? Math.max(...parts.map((p) => p.latencyMs[q] ?? 0)) : weighted((p) => p.latencyMs[q]);
  return {
    seconds,
    total,
    warmupTotal: sum((p) => p.warmupTotal),
    ok,
    rps: ok / seconds,
    statusCodes,
    errors: sum((p) => p.errors),
    timeouts: sum((p) => p.timeouts),
    cpuUsPerReq: weighted((p) => p.cpuUsPerReq),
    cpuUtil: parts.every((p) => typeof p.cpuUtil === 'number') ? sum((p) => p.cpuUtil * p.seconds) / seconds : null,
    latencyMs,
    slices: parts.length,
  };
}
