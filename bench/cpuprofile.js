#!/usr/bin/env node
// Summarizes V8 .cpuprofile files (from `node --cpu-prof`): the top functions by self
// time, and by inclusive time for functions of this package, so a profile can be read
// without a browser.
//
//   node bench/cpuprofile.js PROFILE.cpuprofile [--top 30] [--filter text] [--requests N]
//
// With --requests (the requests the process answered; `bench/run.js --profile DIR` writes
// them to DIR/requests.json and they are picked up from there), times are shown in
// microseconds per request rather than in percent, so profiles of different processes
// compare line by line.
import { readFileSync, existsSync } from 'node:fs';
import { dirname, join, basename } from 'node:path';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { against: { type: 'string' }, all: { type: 'boolean', default: false }, requests: { type: 'string' }, top: { type: 'string', default: '30' }, filter: { type: 'string' }, inclusive: { type: 'boolean', default: false } },
});
if (positionals.length === 0) {
  process.stderr.write('usage: node bench/cpuprofile.js PROFILE.cpuprofile [--top N] [--filter TEXT] [--inclusive]\n');
  process.exit(2);
}
const top = Number(values.top);
// `… | head` closes the pipe early: stop quietly.
process.stdout.on('error', (err) => process.exit(err.code === 'EPIPE' ? 0 : 1));

function where(cf) {
  let url = cf.url.replace(/^file:\/\//, '');
  // Dependencies as ~/<package>/…; this package's own files as dist/… or bench/….
  url = url.includes('/node_modules/') ? url.replace(/^.*\/node_modules\//, '~/') : url.replace(/^.*\/(dist|src|bench)\//, '$1/');
  return url ? `${url}:${cf.lineNumber + 1}` : '';
}

function load(file) {
  const p = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  // Only the serving window counts: from the first to the last sample taken while an
  // HTTP request was being parsed (startup and shutdown would otherwise be spread over
  // the requests).
  const serving = new Set();
  for (const n of p.nodes) {
    if (n.callFrame.functionName !== 'parserOnHeadersComplete') continue;
    const stack = [n.id];
    while (stack.length) {
      const id = stack.pop();
      serving.add(id);
      for (const c of byId.get(id).children ?? []) stack.push(c);
    }
  }
  let first = 0;
  let last = p.samples.length - 1;
  if (values.all !== true && serving.size > 0) {
    while (first < last && !serving.has(p.samples[first])) first++;
    while (last > first && !serving.has(p.samples[last])) last--;
  }
  // Sample counts → microseconds using the recorded time deltas.
  const selfUs = new Map();
  for (let i = first; i <= last; i++) {
    const id = p.samples[i];
    selfUs.set(id, (selfUs.get(id) ?? 0) + (p.timeDeltas[i] ?? 0));
  }
  const total = [...selfUs.values()].reduce((a, b) => a + b, 0);
  const key = (n) => `${n.callFrame.functionName || '(anonymous)'} ${where(n.callFrame)}`;
  const self = new Map();
  const incl = new Map();
  for (const [id, us] of selfUs) {
    const n = byId.get(id);
    self.set(key(n), (self.get(key(n)) ?? 0) + us);
    // Inclusive: count each function once per sample stack.
    const seen = new Set();
    for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
      const k = key(byId.get(cur));
      if (seen.has(k)) continue;
      seen.add(k);
      incl.set(k, (incl.get(k) ?? 0) + us);
    }
  }
  let requests = values.requests && !values.against ? Number(values.requests) : undefined;
  const counts = join(dirname(file), 'requests.json');
  if (requests === undefined && existsSync(counts)) requests = JSON.parse(readFileSync(counts, 'utf8'))[basename(file, '.cpuprofile')];
  return { total, self, incl, requests };
}

// --against OTHER: per-request difference, function by function (both need request counts).
if (values.against) {
  const a = load(positionals[0]);
  const b = load(values.against);
  if (!a.requests || !b.requests) throw new Error('--against needs request counts for both profiles (requests.json)');
  const rows = values.inclusive ? [a.incl, b.incl] : [a.self, b.self];
  const keys = new Set([...rows[0].keys(), ...rows[1].keys()]);
  const diff = [...keys].filter((k) => !k.startsWith('(idle)')).map((k) => [k, (rows[0].get(k) ?? 0) / a.requests - (rows[1].get(k) ?? 0) / b.requests]);
  const busy = (x) => [...x.self].filter(([k]) => !k.startsWith('(idle)')).reduce((s, [, v]) => s + v, 0) / x.requests;
  process.stdout.write(`${positionals[0]} − ${values.against}: ${(busy(a) - busy(b)).toFixed(1)} µs busy per request (${busy(a).toFixed(1)} − ${busy(b).toFixed(1)})\n`);
  for (const [k, d] of diff.sort((x, y) => Math.abs(y[1]) - Math.abs(x[1])).slice(0, top)) process.stdout.write(`${d >= 0 ? '+' : ''}${d.toFixed(1).padStart(6)} µs  ${k}\n`);
  process.exit(0);
}

for (const file of positionals) {
  const { total, self, incl, requests } = load(file);
  const idle = [...self].filter(([k]) => k.startsWith('(idle)')).reduce((a, [, v]) => a + v, 0);
  const busy = total - idle;
  const pct = requests ? (us) => `${(us / requests).toFixed(1).padStart(6)} µs` : (us) => `${((100 * us) / busy).toFixed(1).padStart(5)}%`;
  process.stdout.write(`\n${file}: ${(total / 1e6).toFixed(1)} s sampled, ${(busy / 1e6).toFixed(1)} s busy` + (requests ? `, ${requests} requests: ${(busy / requests).toFixed(1)} µs busy per request (serving window only)\n` : ' (percentages of busy time)\n'));
  const rows = (values.inclusive ? incl : self);
  const list = [...rows].filter(([k]) => !k.startsWith('(idle)') && (!values.filter || k.includes(values.filter))).sort((a, b) => b[1] - a[1]).slice(0, top);
  process.stdout.write(values.inclusive ? 'inclusive:\n' : 'self:\n');
  for (const [k, us] of list) process.stdout.write(`${pct(us)}  ${k}\n`);
  // Rough attribution of self time by origin.
  const groups = new Map();
  for (const [k, us] of self) {
    if (k.startsWith('(idle)')) continue;
    const g = /\s(dist|src|bench)\//.test(k) ? 'portcullis (own code)' : /\s~\/([^/]+(?:\/[^/]+)?)\//.exec(k)?.[1]?.replace(/^([^@][^/]*)\/.*$/, '$1') ?? (/\snode:/.test(k) ? 'node core (js)' : k.startsWith('(') ? k.split(' ')[0] : 'native/builtin');
    groups.set(g, (groups.get(g) ?? 0) + us);
  }
  process.stdout.write('self time by origin:\n');
  for (const [g, us] of [...groups].sort((a, b) => b[1] - a[1]).slice(0, 15)) process.stdout.write(`${pct(us)}  ${g}\n`);
}
