// The load generator, always run as its own process so it never shares an event loop with
// a server under test. Started with a JSON job in argv it runs it and prints one JSON result
// line; forked with IPC (no argv job) it runs the jobs it is sent, one at a time, and sends
// each result back, so a benchmark does not pay a process start per sample.
//
// Job: { url, connections, pipelining, duration (s), warmup (s), headers, overallRate?,
//        flood?: { prefix, keyId, header }, keysFile?: path (one key per line, each sent once),
//        cpuPid?, clockTicks? (CPU time that process spends during the measured phase) }
import { readdirSync, readFileSync } from 'node:fs';
import { createHistogram } from 'node:perf_hooks';
import { randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
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
/** User + system CPU ticks of a process and every process under it (workers of a primary). */
function cpuTicks(pid) {
  if (!pid) return 0;
  const procs = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      procs.push({ pid: Number(d), ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) });
    } catch {
      // Gone meanwhile.
    }
  }
  const tree = new Set([pid]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const p of procs) if (!tree.has(p.pid) && tree.has(p.ppid)) { tree.add(p.pid); grew = true; }
  }
  return procs.reduce((sum, p) => sum + (tree.has(p.pid) ? p.ticks : 0), 0);
}

function run(opts, onResponse) {
  return new Promise((resolve, reject) => {
    const inst = autocannon(opts, (err, res) => (err ? reject(err) : resolve(res)));
    if (onResponse) inst.on('response', onResponse);
  });
}

/** wrk's durations: "812.00us", "1.23ms", "1.02s", "2.00m". */
function wrkMs(text) {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(text);
  if (!m) return null;
  return Number(m[1]) * { us: 0.001, ms: 1, s: 1000, m: 60_000 }[m[2]];
}

function wrk(job, seconds) {
  const args = ['-t1', `-c${job.connections ?? 32}`, `-d${seconds}s`, '--latency', '--timeout', '10s'];
  for (const [k, v] of Object.entries(job.headers ?? {})) args.push('-H', `${k}: ${v}`);
  args.push(job.url);
  return new Promise((resolve, reject) => {
    execFile('wrk', args, { encoding: 'utf8' }, (err, stdout, stderr) => (err ? reject(new Error(`wrk: ${stderr || err.message}`)) : resolve(stdout)));
  });
}

/**
 * The same measurement with wrk (C, one thread): on a 2-core machine it leaves the servers
 * measured far more CPU than autocannon does. wrk keeps its own latency histogram and
 * reports p50/p90/p99; it cannot vary headers per request, so it only runs fixed-header jobs.
 */
async function runWrkJob(job) {
  let warmupTotal = 0;
  if (job.warmup > 0) warmupTotal = Number(/(\d+) requests in/.exec(await wrk(job, Math.max(1, Math.round(job.warmup))))?.[1] ?? 0);
  const cpu0 = cpuTicks(job.cpuPid);
  const t0 = performance.now();
  const out = await wrk(job, Math.max(1, Math.round(job.duration)));
  const elapsed = (performance.now() - t0) / 1000;
  const cpuSeconds = (cpuTicks(job.cpuPid) - cpu0) / (job.clockTicks ?? 100);
  const done = /(\d+) requests in ([\d.]+\w+)/.exec(out);
  if (!done) throw new Error(`wrk printed no summary:\n${out}`);
  const total = Number(done[1]);
  const seconds = wrkMs(done[2]) / 1000;
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const pct = (q) => wrkMs(new RegExp(`^\\s+${q}%\\s+(\\S+)`, 'm').exec(out)?.[1] ?? '');
  const lat = /^\s+Latency\s+(\S+)\s+(\S+)\s+(\S+)/m.exec(out);
  const ok = total - non2xx;
  return {
    seconds,
    total,
    warmupTotal,
    ok,
    rps: ok / seconds,
    // wrk counts answers that are not 2xx/3xx but does not say which status they had.
    statusCodes: non2xx ? { 200: ok, other: non2xx } : { 200: ok },
    errors: sock ? Number(sock[1]) + Number(sock[2]) + Number(sock[3]) : 0,
    timeouts: sock ? Number(sock[4]) : 0,
    cpuUsPerReq: job.cpuPid && total ? (cpuSeconds * 1e6) / total : null,
    cpuUtil: job.cpuPid ? cpuSeconds / elapsed : null,
    latencyMs: { p50: pct(50), p90: pct(90), p99: pct(99), max: lat ? wrkMs(lat[3]) : null, mean: lat ? wrkMs(lat[1]) : null },
  };
}

async function runJob(job) {
  if (job.generator === 'wrk') {
    if (job.flood || job.keysFile || job.overallRate) throw new Error('wrk runs only fixed-header, unthrottled jobs');
    return runWrkJob(job);
  }
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
