#!/usr/bin/env node
// Imports run one way: commands → gateway → pipeline → stages → stores → util
// (docs/architecture.md). Each folder of src/ has a layer; a module may import from its own
// folder, from a lower layer, or a leaf module — one that imports nothing from src/ but
// util/ (plain types and constants: it can close no cycle). Anything else is printed as
// `FILE → TARGET` and the exit code is 1. `import type` counts: a type is a dependency too.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Lower index = lower layer. Folders on one line share a layer and may not import each other. */
export const LAYERS = [
  ['util', 'clock', 'errors'],
  ['store'],
  ['net', 'http'],
  ['config'],
  ['revocation', 'keys', 'tokens'],
  ['identity'],
  ['credentials', 'authn', 'authz', 'limits', 'proxy'],
  ['ops'],
  ['runtime'],
  ['pipeline'],
  ['gateway'],
  ['commands'],
  ['cli', 'index'],
];

/** Lateral imports inside one layer that are part of the design, each with its reason. */
export const ALLOWED = [['index', 'cli', 'the package entry re-exports the CLI']];

const root = join(dirname(fileURLToPath(import.meta.url)), '..', 'src');

function files(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

function folderOf(rel) {
  const parts = rel.split('/');
  return parts.length > 1 ? parts[0] : parts[0].replace(/\.ts$/, '');
}

function importsOf(file) {
  const text = readFileSync(file, 'utf8');
  const out = [];
  for (const m of text.matchAll(/(?:\bfrom|\bimport\()\s*'(\.[^']+)'/g)) out.push(relative(root, join(dirname(file), m[1])).replace(/\.js$/, '.ts'));
  return out;
}

export function violations() {
  const layer = new Map();
  for (const [i, names] of LAYERS.entries()) for (const n of names) layer.set(n, i);
  const all = files(root).map((f) => relative(root, f));
  const graph = new Map(all.map((f) => [f, importsOf(join(root, f))]));
  const leaf = (f) => (graph.get(f) ?? []).every((t) => folderOf(t) === 'util');
  const allowed = new Set(ALLOWED.map(([a, b]) => `${a}>${b}`));
  const bad = [];
  for (const [f, targets] of graph) {
    const from = folderOf(f);
    if (!layer.has(from)) bad.push(`${f}: its folder has no layer in scripts/check-imports.js`);
    for (const t of targets) {
      const to = folderOf(t);
      if (to === from || leaf(t) || allowed.has(`${from}>${to}`)) continue;
      if (!layer.has(to) || layer.get(to) >= layer.get(from)) bad.push(`${f} → ${t}`);
    }
  }
  return bad;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const bad = violations();
  for (const b of bad) process.stdout.write(`${b}\n`);
  if (bad.length) {
    process.stderr.write(`${bad.length} import(s) run against the layers (scripts/check-imports.js)\n`);
    process.exitCode = 1;
  }
}
