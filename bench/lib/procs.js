// Child processes of the benchmark: servers under test, the CLI, and load generators.
import { spawn, fork } from 'node:child_process';
import { openSync, closeSync, readFileSync, writeFileSync, existsSync, copyFileSync } from 'node:fs';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';

const live = new Set();

/** Kills every server still running (on exit or failure); each by its own pid. */
export function killAll() {
  for (const c of live) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}
process.on('exit', killAll);

function track(child) {
  live.add(child);
  child.once('exit', () => live.delete(child));
  return child;
}

/** Stops a server with SIGTERM and waits for it (SIGKILL after `ms`). */
export function stop(child, ms = 15_000) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve(child.exitCode);
    const t = setTimeout(() => child.kill('SIGKILL'), ms);
    child.once('exit', (code) => { clearTimeout(t); resolve(code); });
    child.kill('SIGTERM');
  });
}

/** Runs a server script that prints `{"port":N}` once listening. */
export function startServer(script, args = [], { nodeArgs = [], env = {} } = {}) {
  const child = track(spawn(process.execPath, [...nodeArgs, script, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } }));
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    child.stderr.on('data', (d) => { err += d; });
    const onData = (d) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl === -1) return;
      child.stdout.off('data', onData);
      child.stdout.resume();
      try {
        const { port } = JSON.parse(out.slice(0, nl));
        resolve({ child, port, url: `http://127.0.0.1:${port}`, pid: child.pid });
      } catch {
        reject(new Error(`${script}: unexpected output ${out}\n${err}`));
      }
    };
    child.stdout.on('data', onData);
    child.once('exit', (code) => reject(new Error(`${script} exited with ${code}\n${err}`)));
  });
}

/** A port nothing listens on right now (taken from the kernel, then released). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Runs `portcullis serve` from the build. The config's two `port: 0` (listener, admin) are
 * replaced by free ports first, so readiness does not depend on the log level; its JSON log
 * lines go to a file (the cheapest realistic sink, and the gateway writes one line per
 * request).
 */
export async function startGateway(bin, configFile, opts) {
  // A port found free can be taken before the gateway binds it (a load generator's
  // outgoing connections draw from the same range): try again on fresh ports.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startGatewayOnce(bin, configFile, opts);
    } catch (err) {
      if (attempt >= 3 || !/EADDRINUSE/.test(String(err?.message))) throw err;
    }
  }
}

async function startGatewayOnce(bin, configFile, { cwd, logFile, nodeArgs = [], env = {}, timeoutMs = 60_000, args = [] }) {
  const port = await freePort();
  const admin = await freePort();
  let n = 0;
  // The config as written, with its `port: 0`s, is kept beside it for restarts.
  const template = `${configFile}.ports-0`;
  if (!existsSync(template)) copyFileSync(configFile, template);
  writeFileSync(configFile, readFileSync(template, 'utf8').replace(/^(\s+port:) 0$/gm, (_m, k) => `${k} ${n++ === 0 ? port : admin}`));
  const fd = openSync(logFile, 'a');
  const child = track(spawn(process.execPath, [...nodeArgs, bin, 'serve', '-c', configFile, ...args], { cwd, stdio: ['ignore', fd, fd], env: { ...process.env, ...env } }));
  closeSync(fd);
  const adminUrl = `http://127.0.0.1:${admin}`;
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`portcullis exited with ${child.exitCode}\n${readFileSync(logFile, 'utf8').slice(-4000)}`);
    const up = await fetch(`${adminUrl}/healthz`).then((r) => r.ok, () => false);
    if (up) return { child, pid: child.pid, port, url: `http://127.0.0.1:${port}`, adminUrl };
    await sleep(100);
  }
  child.kill('SIGKILL');
  throw new Error(`portcullis did not start within ${timeoutMs} ms\n${readFileSync(logFile, 'utf8').slice(-4000)}`);
}

/** Runs a command to completion; resolves with its stdout, rejects with its stderr. */
export function runCommand(args, { cwd, env = {}, nodeArgs = [] } = {}) {
  return new Promise((resolve, reject) => {
    const child = track(spawn(process.execPath, [...nodeArgs, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } }));
    const out = [];
    let err = '';
    child.stdout.on('data', (d) => out.push(d));
    child.stderr.on('data', (d) => { err += d; });
    child.once('exit', (code) => {
      const text = Buffer.concat(out).toString('utf8');
      if (code === 0) resolve(text);
      else reject(new Error(`${args.join(' ').slice(0, 200)} exited with ${code}\n${err}\n${text.slice(0, 2000)}`));
    });
  });
}

/** Resident memory of a process in KiB (VmRSS from /proc). */
export function rssKb(pid) {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

/**
 * Where a process's resident memory is (MB), from /proc/PID/smaps: `files` mapped files
 * (the node binary's code and libraries), `brk` glibc's main malloc arena, `anon` every
 * other private anonymous mapping (V8's heap pages, the other malloc arenas and large
 * malloc chunks, thread stacks).
 */
export function rssParts(pid) {
  const parts = { files: 0, brk: 0, anon: 0 };
  let kind = 'anon';
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) kind = head[1].startsWith('/') ? 'files' : head[1] === '[heap]' ? 'brk' : 'anon';
    else if (line.startsWith('Rss:')) parts[kind] += Number(/(\d+)/.exec(line)[1]);
  }
  return { filesMB: Math.round(parts.files / 102.4) / 10, brkMB: Math.round(parts.brk / 102.4) / 10, anonMB: Math.round(parts.anon / 102.4) / 10 };
}

/**
 * Load generators kept running between samples (bench/load.js forked with IPC): each runs
 * one job at a time in its own process; `run` waits for a free one.
 */
export class LoadWorkers {
  #idle = [];
  #waiting = [];
  #pending = new Map();
  #next = 0;

  constructor(script, count) {
    this.ready = Promise.all(Array.from({ length: count }, () => this.#start(script)));
  }

  async #start(script) {
    const child = track(fork(script, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
    await new Promise((resolve, reject) => {
      child.once('message', (m) => (m?.ready ? resolve() : reject(new Error('load worker did not start'))));
      child.once('exit', (code) => reject(new Error(`load worker exited with ${code}`)));
    });
    child.on('message', ({ id, result, error }) => {
      const p = this.#pending.get(id);
      this.#pending.delete(id);
      this.#release(child);
      if (error) p?.reject(new Error(error));
      else p?.resolve(result);
    });
    child.on('exit', (code) => {
      for (const [id, p] of this.#pending) {
        this.#pending.delete(id);
        p.reject(new Error(`load worker exited with ${code}`));
      }
    });
    this.#idle.push(child);
  }

  #release(child) {
    const w = this.#waiting.shift();
    if (w) w(child);
    else this.#idle.push(child);
  }

  async run(job) {
    await this.ready;
    const child = this.#idle.pop() ?? (await new Promise((resolve) => this.#waiting.push(resolve)));
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      child.send({ id, job });
    });
  }

  close() {
    for (const c of live) if (c.connected) c.disconnect();
  }
}

/**
 * The shipped `gateway.config.yaml` of `build`, written to `dir` with free ports, the
 * upstream at `upstreamUrl`, log level warn, and (with `storeUrl`) the store there instead
 * of its embedded default.
 */
export function shippedConfig(build, dir, upstreamUrl, storeUrl) {
  const text = readFileSync(join(build, 'gateway.config.yaml'), 'utf8')
    // Block style with `port: 0`, which startGateway replaces by free ports.
    .replace(/^listen: \{[^}]*\}/m, 'listen:\n  host: 127.0.0.1\n  port: 0')
    .replace(/^admin: \{.*\}$/m, 'admin:\n  host: 127.0.0.1\n  port: 0')
    .replace(/^(\s*log: \{ level: )\w+/m, '$1warn')
    .replace(/\$\{UPSTREAM_URL:-[^}]*\}/, upstreamUrl)
    .replace(/\$\{DATABASE_URL:-[^}]*\}/, storeUrl ?? '$&');
  const file = join(dir, 'gateway.config.yaml');
  writeFileSync(file, text);
  return file;
}
