#!/usr/bin/env node
// Runs the compiled CLI (built by `npm ci` through the `prepare` script).
//
// `serve` runs with V8 flags that keep the garbage collector's headroom small (docs/
// performance.md#memory): V8 sizes its young generation and old-generation growth for the
// machine's memory, not for a gateway whose live heap is tens of MB, and those flags only
// take effect on the command line. So `serve` replaces this process (same PID, same stdio)
// with one started with them, unless they are already there or PORTCULLIS_NODE_FLAGS says
// otherwise ('' = none; or the flags to use instead). The replacement also runs with
// MALLOC_ARENA_MAX=2 unless the environment sets it: glibc gives each thread that allocates
// (V8's GC helpers, libuv's pool) an arena of its own, and under load those held ~50 MB
// of RSS outside the V8 heap (measured: 100 000 cached keys, 243 MB against 192 MB).
const DEFAULT_FLAGS = '--max-semi-space-size=4 --heap-growing-percent=25 --gc-memory-reducer-start-delay-ms=2000';

const args = process.argv.slice(2);
const flags = (process.env.PORTCULLIS_NODE_FLAGS ?? DEFAULT_FLAGS).split(/\s+/).filter(Boolean);
if (
  args.includes('serve') &&
  flags.length > 0 &&
  !flags.every((f) => process.execArgv.includes(f)) &&
  typeof process.execve === 'function' &&
  process.env.PORTCULLIS_NODE_FLAGS_APPLIED === undefined
) {
  process.execve(process.execPath, [process.execPath, ...flags, ...process.execArgv, process.argv[1], ...args], {
    ...process.env,
    MALLOC_ARENA_MAX: process.env.MALLOC_ARENA_MAX || '2',
    PORTCULLIS_NODE_FLAGS_APPLIED: '1',
  });
}

const { main } = await import('../dist/cli.js');
main(args).then(
  (code) => { process.exitCode = code; },
  (err) => { process.stderr.write(`portcullis: ${err?.stack ?? err}\n`); process.exitCode = 1; },
);
