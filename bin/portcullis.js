#!/usr/bin/env node
// Runs the compiled CLI (built by `npm ci` through the `prepare` script).
//
// `serve` runs with V8 flags that keep the garbage collector's headroom small (docs/
// performance.md#memory): V8 sizes its young generation and old-generation growth for the
// machine's memory, not for a gateway whose live heap is tens of MB, and those flags only
// take effect on the command line. It also allocates with jemalloc when the system has it
// (Debian's libjemalloc2) and LD_PRELOAD is not set: glibc's malloc kept 40–60 MB of freed
// memory resident after a load (100 000 cached keys: 220–231 MB against 189–194 MB with
// jemalloc returning its free pages within a second). Both take a new process image, so
// `serve` replaces this process (same PID, same stdio) with one started with them, unless
// both are there already. PORTCULLIS_NODE_FLAGS replaces the flags ('' = none);
// PORTCULLIS_MALLOC=system keeps glibc's malloc (then with MALLOC_ARENA_MAX=2 unless the
// environment sets it: glibc gives each thread that allocates an arena of its own), and a
// path names the jemalloc to use.
import { existsSync } from 'node:fs';

const DEFAULT_FLAGS = '--max-semi-space-size=4 --heap-growing-percent=25 --gc-memory-reducer-start-delay-ms=2000';
// Free pages go back to the system after a second, from jemalloc's own thread (an idle
// gateway allocates nothing that would trigger the purge).
const JEMALLOC_CONF = 'background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0';
const TRIPLETS = { x64: 'x86_64-linux-gnu', arm64: 'aarch64-linux-gnu' };

/** The jemalloc to preload, or undefined: none wanted, none found, or LD_PRELOAD already set. */
function jemalloc(env) {
  const wanted = env.PORTCULLIS_MALLOC;
  if (wanted && wanted !== 'system' && !existsSync(wanted)) {
    process.stderr.write(`portcullis: PORTCULLIS_MALLOC=${wanted}: no such file (set it to a jemalloc library, or to "system")\n`);
    process.exit(2);
  }
  if (wanted === 'system' || env.LD_PRELOAD || process.platform !== 'linux') return undefined;
  if (wanted) return wanted;
  const dirs = [`/usr/lib/${TRIPLETS[process.arch] ?? ''}`, '/usr/lib64', '/usr/lib', '/usr/local/lib'];
  return dirs.map((d) => `${d}/libjemalloc.so.2`).find((f) => existsSync(f));
}

const args = process.argv.slice(2);
if (args.includes('serve') && process.env.PORTCULLIS_NODE_FLAGS_APPLIED === undefined && typeof process.execve === 'function') {
  const flags = (process.env.PORTCULLIS_NODE_FLAGS ?? DEFAULT_FLAGS).split(/\s+/).filter(Boolean);
  const missing = flags.filter((f) => !process.execArgv.includes(f));
  const preload = jemalloc(process.env);
  if (missing.length > 0 || preload !== undefined) {
    process.execve(process.execPath, [process.execPath, ...missing, ...process.execArgv, process.argv[1], ...args], {
      ...process.env,
      ...(preload === undefined
        ? { MALLOC_ARENA_MAX: process.env.MALLOC_ARENA_MAX || '2' }
        : { LD_PRELOAD: preload, MALLOC_CONF: process.env.MALLOC_CONF || JEMALLOC_CONF }),
      PORTCULLIS_NODE_FLAGS_APPLIED: '1',
    });
  }
}

const { main } = await import('../dist/cli.js');
main(args).then(
  (code) => { process.exitCode = code; },
  (err) => { process.stderr.write(`portcullis: ${err?.stack ?? err}\n`); process.exitCode = 1; },
);
