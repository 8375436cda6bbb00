// The load generator, always run as its own process so it never shares an event loop with
// a server under test. Started with a JSON job in argv it runs it and prints one JSON result
// line; forked with IPC (no argv job) it runs the jobs it is sent, one at a time, and sends
// each result back, so a benchmark does not pay a process start per sample.
//
// Job: { url, connections, pipelining, duration (s), warmup (s), headers, overallRate?,
//        flood?: { prefix, keyId, header }, keysFile?: path (one key per line, each sent once),
//        cpuPid?, clockTicks? (CPU time that process spends during the measured phase) }
import { readFileSync } from 'node:fs';
import { createHistogram } from 'node:perf_hooks';
import { randomBytes } from 'node:crypto';
import autocannon from 'autocannon';
import { formatKey } from '../dist/keys/format.js';

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
function wrongSecret() {
  const b = randomBytes(43);
  let s = '';
  for (let i = 0; i < 43; i++) s += BASE62[b[i] % 62];
  return s;
}

function requestsFor(job) {
  if (job.flood) {
    // Every request: the valid key id with a fresh wrong secret and a correct checksum, so
    // it passes the format check and reaches the failed-attempt limits and argon2.
    const { prefix, keyId, header } = job.flood;
    return { requests: [{ setupRequest: (req) => ({ ...req, headers: { ...req.headers, [header]: formatKey(prefix, keyId, wrongSecret()) } }) }] };
  }
  if (job.keysFile) {
    const keys = readFileSync(job.keysFile, 'utf8').split('\n').filter(Boolean);
    let i = 0;
    return {
      amount: keys.length,
      requests: [{
        setupRequest: (req) => {
          req.headers = { 'x-api-key': keys[i++ % keys.length] };
          return req;
        },
      }],
    };
  }
  return {};
}

/** utime + stime of a process, in clock ticks (/proc/<pid>/stat fields 14 and 15). */
function cpuTicks(pid) {
  if (!pid) return 0;
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]);
}

function run(opts, onResponse) {
  return new Promise((resolve, reject) => {
    const inst = autocannon(opts, (err, res) => (err ? reject(err) : resolve(res)));
    if (onResponse) inst.on('response', onResponse);
  });
}

async function runJob(job) {
  const base = {
    url: job.url,
    connections: job.connections ?? 32,
    pipelining: job.pipelining ?? 1,
    headers: job.headers ?? {},
    timeout: 10,
    // autocannon stops at its first sample tick after the duration: tick often, so a 4 s
    // sample lasts 4 s and not up to 5.
    sampleInt: 100,
  };
  const dyn = requestsFor(job);
  if (dyn.requests && !job.keysFile) base.requests = dyn.requests;

  let warmupTotal = 0;
  if (job.warmup > 0 && !job.keysFile) warmupTotal = (await run({ ...base, duration: job.warmup })).requests.total;

  // autocannon's own histogram has 1 ms buckets; loopback latencies need microseconds.
  const hist = createHistogram({ lowest: 1, highest: 60_000_000, figures: 3 });
  const main = { ...base };
  if (job.keysFile) Object.assign(main, { amount: dyn.amount, requests: dyn.requests });
  else main.duration = job.duration;
  if (job.overallRate) main.overallRate = job.overallRate;
  const cpu0 = cpuTicks(job.cpuPid);
  const t0 = performance.now();
  const res = await run(main, (_client, status, _bytes, ms) => {
    if (status >= 200 && status < 300) hist.record(Math.max(1, Math.round(ms * 1000)));
  });
  const elapsed = (performance.now() - t0) / 1000;
  const cpuSeconds = (cpuTicks(job.cpuPid) - cpu0) / (job.clockTicks ?? 100);
  const seconds = job.keysFile ? elapsed : (res.finish - res.start) / 1000 || job.duration;
  const codes = {};
  for (const [code, v] of Object.entries(res.statusCodeStats ?? {})) codes[code] = v.count;
  const us = (q) => (hist.count === 0 ? null : hist.percentile(q) / 1000);
  return {
    seconds,
    total: res.requests.total,
    warmupTotal,
    ok: res['2xx'],
    rps: res['2xx'] / seconds,
    statusCodes: codes,
    errors: res.errors,
    timeouts: res.timeouts,
    // Server CPU per request: far less sensitive than req/s to other load on the machine.
    cpuUsPerReq: job.cpuPid && res.requests.total ? (cpuSeconds * 1e6) / res.requests.total : null,
    cpuUtil: job.cpuPid ? cpuSeconds / elapsed : null,
    latencyMs: { p50: us(50), p90: us(90), p99: us(99), max: hist.count ? hist.max / 1000 : null, mean: hist.count ? hist.mean / 1000 : null },
  };
}

if (process.argv[2]) {
  process.stdout.write(JSON.stringify(await runJob(JSON.parse(process.argv[2]))) + '\n');
} else if (process.send) {
  process.on('message', ({ id, job }) => {
    runJob(job).then(
      (result) => process.send({ id, result }),
      (err) => process.send({ id, error: String(err?.stack ?? err) }),
    );
  });
  process.on('disconnect', () => process.exit(0));
  process.send({ ready: true });
} else {
  process.stderr.write('usage: node bench/load.js JOB_JSON (or fork it with IPC)\n');
  process.exit(2);
}
