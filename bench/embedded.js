#!/usr/bin/env node
// The embedded store at sidecar size (SPEC §8): a gateway started like `npm start`, on the
// shipped gateway.config.yaml and its default embedded store, measured for
//   - idle RSS after start,
//   - RSS after the benchmark's load (one key, fixed headers, autocannon),
//   - cold key verification (first request with a new key: store read + argon2),
//   - `keys import` of 100 000 SHA-256 keys into a fresh store (time and the CLI's peak RSS),
//   - idle RSS of a gateway opened on those 100 000 keys.
//
//   node bench/embedded.js [--build DIR]… [--rounds N] [--keys N] [--duration S] [--json FILE]
//
// --build names a build to measure (a checkout with dist/, bin/, gateway.config.yaml,
// src/store/migrations and node_modules; default this one). Given several times, the builds
// are measured in the same run, in alternating order over --rounds, and each figure is the
// median of its rounds: before and after on the same machine at the same time.
import { parseArgs } from 'node:util';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { startServer, startGateway, runCommand, stop, rssKb, shippedConfig } from './lib/procs.js';
import { median, quantile, round } from './lib/stats.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const { values: flags } = parseArgs({
  options: {
    build: { type: 'string', multiple: true, default: [join(HERE, '..')] },
    rounds: { type: 'string', default: '1' },
    keys: { type: 'string', default: '100000' },
    duration: { type: 'string', default: '10' },
    cold: { type: 'string', default: '16' },
    json: { type: 'string' },
  },
});
const BUILDS = flags.build.map((b) => resolve(b));
const N = Number(flags.keys);
const log = (m) => process.stderr.write(`[embedded] ${m}\n`);
// The shipped config's defaults, not the developer's environment.
const env = { DATABASE_URL: '', REDIS_URL: '', PORTCULLIS_ADMIN_TOKEN: '' };
delete process.env.DATABASE_URL;
delete process.env.REDIS_URL;

const mb = (kb) => round(kb / 1024, 1);

async function settledRss(pid, ms = 3000) {
  await sleep(ms);
  return mb(rssKb(pid));
}


/** Runs a CLI command, sampling its RSS every 20 ms; resolves with stdout, seconds and peak MB. */
function timedCommand(bin, args, cwd) {
  return new Promise((resolvePromise, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, [bin, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let peak = 0;
    const timer = setInterval(() => {
      try {
        const kb = rssKb(child.pid);
        if (Number.isFinite(kb)) peak = Math.max(peak, kb);
      } catch {
        // exited between samples
      }
    }, 20);
    const out = [];
    let err = '';
    child.stdout.on('data', (d) => out.push(d));
    child.stderr.on('data', (d) => { err += d; });
    child.once('exit', (code) => {
      clearInterval(timer);
      if (code !== 0) return reject(new Error(`${args.join(' ')} exited with ${code}: ${err}`));
      resolvePromise({ out: Buffer.concat(out).toString('utf8'), seconds: (performance.now() - t0) / 1000, peakMB: mb(peak) });
    });
  });
}

async function request(url, key) {
  const t0 = performance.now();
  const res = await fetch(url, { headers: { 'x-api-key': key } });
  await res.arrayBuffer();
  return { status: res.status, ms: performance.now() - t0 };
}

async function coldVerification(bin, gw, dir, configFile) {
  // Every key first, then a pause: each first request then meets a settled gateway, whoever
  // created the key (this build's CLI, or the gateway itself through its admin API).
  const keys = [];
  for (let i = 0; i < Number(flags.cold); i++) {
    const { out } = await timedCommand(bin, ['keys', 'create', '-c', configFile, '--subject', `cold-${i}`, '--role', 'basic', '--json'], dir);
    keys.push(JSON.parse(out).key);
  }
  await sleep(1500);
  const cold = [];
  const warm = [];
  for (const key of keys) {
    const first = await request(`${gw.url}/items`, key);
    if (first.status !== 200) throw new Error(`cold request answered ${first.status}`);
    cold.push(first.ms);
    for (let j = 0; j < 5; j++) warm.push((await request(`${gw.url}/items`, key)).ms);
    await sleep(100);
  }
  return { coldMs: { p50: round(median(cold), 2), p90: round(quantile(cold, 0.9), 2) }, warmMs: { p50: round(median(warm), 3) } };
}

/** Every figure of one build, from fresh stores. */
async function measure(build, upstream) {
  const bin = join(build, 'bin', 'portcullis.js');
  const dir = mkdtempSync(join(os.tmpdir(), 'pcl-embedded-'));
  const results = {};
  log(`build ${build}`);
  try {
    const configFile = shippedConfig(build, dir, upstream.url);
    const logFile = join(dir, 'gateway.log');
    let gw = await startGateway(bin, configFile, { cwd: dir, logFile, env });
    results.idleRssMB = await settledRss(gw.pid);
    log(`idle RSS ${results.idleRssMB} MB`);

    Object.assign(results, await coldVerification(bin, gw, dir, configFile));
    log(`cold verification p50 ${results.coldMs.p50} ms (warm ${results.warmMs.p50} ms)`);

    const { out } = await timedCommand(bin, ['keys', 'create', '-c', configFile, '--subject', 'load', '--role', 'basic', '--json'], dir);
    const job = { url: `${gw.url}/items`, connections: 32, duration: Number(flags.duration), warmup: 0.5, headers: { 'x-api-key': JSON.parse(out).key } };
    const load = JSON.parse(await runCommand([join(HERE, 'load.js'), JSON.stringify(job)]));
    results.loadRps = round(load.rps ?? load.requests?.average ?? 0, 0);
    results.rssAfterLoadMB = mb(rssKb(gw.pid));
    log(`after ${flags.duration} s of load (${results.loadRps} req/s): RSS ${results.rssAfterLoadMB} MB`);
    await stop(gw.child);

    // 100 000 SHA-256 keys into a fresh store, as `keys import` does it, no gateway running.
    const importDir = mkdtempSync(join(dir, 'import-'));
    const importConfig = shippedConfig(build, importDir, upstream.url);
    const lines = [];
    const keys = [];
    for (let i = 0; i < N; i++) {
      const key = `legacy_${randomBytes(18).toString('base64url')}`;
      keys.push(key);
      lines.push(JSON.stringify({ sha256: createHash('sha256').update(key).digest('hex'), subject: `user-${i}`, role: 'basic' }));
    }
    writeFileSync(join(importDir, 'keys.jsonl'), lines.join('\n') + '\n');
    const imp = await timedCommand(bin, ['keys', 'import', '-c', importConfig, '--file', 'keys.jsonl', '--json'], importDir);
    if (JSON.parse(imp.out).imported !== N) throw new Error(`import: ${imp.out.slice(0, 200)}`);
    results.importSeconds = round(imp.seconds, 1);
    results.importPeakRssMB = imp.peakMB;
    log(`imported ${N} keys in ${results.importSeconds} s (CLI peak RSS ${results.importPeakRssMB} MB)`);

    gw = await startGateway(bin, importConfig, { cwd: importDir, logFile: join(importDir, 'gateway.log'), env });
    results.idleRssWithKeysMB = await settledRss(gw.pid);
    const sample = keys.slice(0, 2000);
    for (const k of sample) {
      const r = await request(`${gw.url}/items`, k);
      if (r.status !== 200) throw new Error(`imported key answered ${r.status}`);
    }
    results.rssAfterSampleMB = mb(rssKb(gw.pid));
    log(`gateway on ${N} keys: idle RSS ${results.idleRssWithKeysMB} MB, ${sample.length} keys verified → ${results.rssAfterSampleMB} MB`);
    await stop(gw.child);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return results;
}

/**
 * Cold verification of every build side by side: one gateway per build running at once,
 * their first requests with new keys alternating, so a busy moment of the machine falls on
 * both alike.
 */
async function pairedCold(builds, upstream) {
  const dirs = [];
  const gws = [];
  const keys = [];
  try {
    for (const build of builds) {
      const bin = join(build, 'bin', 'portcullis.js');
      const dir = mkdtempSync(join(os.tmpdir(), 'pcl-embedded-cold-'));
      dirs.push(dir);
      const configFile = shippedConfig(build, dir, upstream.url);
      gws.push(await startGateway(bin, configFile, { cwd: dir, logFile: join(dir, 'gateway.log'), env }));
      const mine = [];
      for (let i = 0; i < Number(flags.cold); i++) {
        const { out } = await timedCommand(bin, ['keys', 'create', '-c', configFile, '--subject', `cold-${i}`, '--role', 'basic', '--json'], dir);
        mine.push(JSON.parse(out).key);
      }
      keys.push(mine);
    }
    await sleep(1500);
    const cold = builds.map(() => []);
    for (let i = 0; i < Number(flags.cold); i++) {
      for (let b = 0; b < builds.length; b++) {
        const at = (i % 2 === 0 ? b : builds.length - 1 - b);
        const r = await request(`${gws[at].url}/items`, keys[at][i]);
        if (r.status !== 200) throw new Error(`cold request answered ${r.status}`);
        cold[at].push(r.ms);
        await sleep(50);
      }
    }
    return builds.map((build, b) => ({ build, p50: round(median(cold[b]), 2), p90: round(quantile(cold[b], 0.9), 2) }));
  } finally {
    for (const gw of gws) await stop(gw.child);
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  }
}

/** The median of every figure over the rounds (nested objects field by field). */
function medians(runs) {
  const out = {};
  for (const [k, v] of Object.entries(runs[0])) {
    out[k] = typeof v === 'number' ? round(median(runs.map((r) => r[k])), 2) : medians(runs.map((r) => r[k]));
  }
  return out;
}

async function main() {
  const upstream = await startServer(join(HERE, 'servers', 'upstream.js'));
  const runs = new Map(BUILDS.map((b) => [b, []]));
  try {
    for (let r = 0; r < Number(flags.rounds); r++) {
      const order = r % 2 === 0 ? BUILDS : [...BUILDS].reverse();
      for (const b of order) runs.get(b).push(await measure(b, upstream));
    }
    if (BUILDS.length > 1) {
      const paired = await pairedCold(BUILDS, upstream);
      log(`cold verification side by side: ${paired.map((p) => `${p.build} p50 ${p.p50} ms`).join(', ')}`);
      for (const p of paired) runs.get(p.build).paired = p;
    }
  } finally {
    await stop(upstream.child);
  }
  const common = { node: process.version, cpus: os.cpus().length, keys: N, rounds: Number(flags.rounds) };
  const per = BUILDS.map((b) => ({
    build: b,
    ...(runs.get(b).length > 0 ? medians(runs.get(b)) : {}),
    ...(runs.get(b).paired ? { coldSideBySideMs: { p50: runs.get(b).paired.p50, p90: runs.get(b).paired.p90 } } : {}),
    ...(runs.get(b).length > 1 ? { perRound: runs.get(b) } : {}),
  }));
  const results = per.length === 1 ? { ...common, ...per[0] } : { ...common, builds: per };
  const text = JSON.stringify(results, null, 2);
  if (flags.json) writeFileSync(flags.json, text + '\n');
  process.stdout.write(text + '\n');
}

await main();
