import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
// @ts-expect-error: a plain script without type declarations
import { violations } from '../scripts/check-imports.js';

// Imports run one way: commands → gateway → pipeline → stages → stores/util. These are the
// edges that once ran the other way; each is refused here.
const SRC = join(import.meta.dirname, '..', 'src');
const FORBIDDEN: Array<{ from: string; to: string; why: string }> = [
  { from: 'http/', to: 'config/', why: 'config compiles routes with http/; http/ declares the shapes it reads' },
  { from: 'ops/', to: 'pipeline/', why: 'the pipeline reports to ops/ (ops/record.ts), not the other way' },
];

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

function imports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(/(?:from|import\()\s*'(\.[^']+)'/g)) out.push(relative(SRC, join(file, '..', m[1]!)));
  return out;
}

for (const rule of FORBIDDEN) {
  t.test(`${rule.from} does not import ${rule.to}`, async (t) => {
    const bad: string[] = [];
    for (const f of files(join(SRC, rule.from))) {
      for (const target of imports(f)) if (target.startsWith(rule.to)) bad.push(`${relative(SRC, f)} → ${target}`);
    }
    t.same(bad, [], rule.why);
  });
}

t.test('every import runs down the layers of scripts/check-imports.js', async (t) => {
  t.same((violations as () => string[])(), [], 'FILE → TARGET pairs that run against the layers');
});
