import t from 'tap';
import { createHmac } from 'node:crypto';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { subjectHasher } from '../../src/ops/log.js';

const expected = (salt: string, s: string) => createHmac('sha256', salt).update(s).digest('hex').slice(0, 32);

t.test('plain: subjects are logged as they are', async (t) => {
  t.equal(subjectHasher('plain', 'x')('alice'), 'alice');
});

t.test('hashed: HMAC-SHA-256 under the salt, 32 hex characters, stable across calls', async (t) => {
  const h = subjectHasher('hashed', 'pepper');
  for (const s of ['alice', 'bob', '', 'ünïcødé', 'alice']) t.equal(h(s), expected('pepper', s), JSON.stringify(s));
  t.not(subjectHasher('hashed', 'other')('alice'), h('alice'), 'another salt, another hash');
});

t.test('hashed: remembered hashes stay right past the memo size', async (t) => {
  const h = subjectHasher('hashed', 'pepper');
  for (let i = 0; i < 25_000; i++) h(`user-${i}`);
  for (const i of [0, 9_999, 10_000, 24_999]) t.equal(h(`user-${i}`), expected('pepper', `user-${i}`));
});

t.test('hashed without a salt: a per-process key, still stable within the process', async (t) => {
  const a = subjectHasher('hashed', '');
  const b = subjectHasher('hashed', '');
  t.equal(a('alice'), a('alice'));
  t.match(a('alice'), /^[0-9a-f]{32}$/);
  t.not(a('alice'), b('alice'), 'each hasher draws its own key');
});

/**
 * Runs log-child.ts in its own process; resolves with its stdout lines and whether the first
 * line arrived while the child was still running. `stopAtFirst` kills the child at its first line.
 */
function child(mode: string, stopAtFirst = false): Promise<{ lines: string[]; aliveAtFirst: boolean | undefined; code: number | null }> {
  const p = spawn(process.execPath, [...process.execArgv, fileURLToPath(new URL('./log-child.ts', import.meta.url)), mode], { stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  let aliveAtFirst: boolean | undefined;
  p.stdout.on('data', (d) => {
    if (aliveAtFirst === undefined) {
      aliveAtFirst = p.exitCode === null && p.signalCode === null;
      if (stopAtFirst) setTimeout(() => p.kill('SIGKILL'), 50);
    }
    out += d;
  });
  return new Promise((resolve) => p.once('close', (code) => resolve({ lines: out.split('\n').filter(Boolean), aliveAtFirst, code })));
}

t.test('stdout logger: a lone line is written without waiting for the batch to fill', async (t) => {
  // The child logs one line and then idles for a minute: the line must come out while it
  // idles, not when it exits.
  const r = await child('quiet', true);
  t.equal(r.lines.length, 1);
  t.equal(JSON.parse(r.lines[0]!).msg, 'one line');
  t.equal(r.aliveAtFirst, true, 'written while the process still ran');
});

t.test('stdout logger: every line, in order, when the process exits right after logging', async (t) => {
  const r = await child('burst-exit');
  t.equal(r.lines.length, 5000);
  t.same(r.lines.map((l) => JSON.parse(l).n), Array.from({ length: 5000 }, (_, n) => n));
});

t.test('stdout logger: every line when the process dies of an uncaught exception', async (t) => {
  const r = await child('burst-crash');
  t.not(r.code, 0);
  t.equal(r.lines.length, 500);
});

t.test('request lines: the same JSON pino writes for them', async (t) => {
  const r = await child('request-lines');
  t.equal(r.lines.length, 4);
  const [ours, ours2, pinos, pinos2] = r.lines.map((l) => l.replace(/"time":\d+/, '"time":0'));
  t.equal(ours, pinos);
  t.equal(ours2, pinos2, 'a refusal with missing fields and escaped characters');
  t.equal(JSON.parse(r.lines[0]!).path, '/films/ünï "quoted" \\ back');
  t.equal(JSON.parse(r.lines[1]!).path, '/a\u0001b\ud800c\u007f\u2028');
});

t.test('request lines: all written when the process exits in the turn that logged them', async (t) => {
  const r = await child('request-exit');
  t.equal(r.lines.filter((l) => JSON.parse(l).msg === 'request').length, 2000);
  t.equal(r.lines.filter((l) => JSON.parse(l).msg === 'done').length, 1);
});

t.test('request lines: none below the info level', async (t) => {
  const r = await child('request-warn');
  t.same(r.lines.map((l) => JSON.parse(l).msg), ['done']);
});
