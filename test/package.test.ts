import t from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';

// What `npm install portcullis` would give a user: every entry point the manifest names is a
// file in the packed tarball, and the package's import resolves to the documented API.
const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as {
  main: string;
  types: string;
  bin: Record<string, string>;
  exports: Record<string, string | { types: string; default: string }>;
};

function entryPoints(): string[] {
  const out = [pkg.main, pkg.types, ...Object.values(pkg.bin)];
  for (const target of Object.values(pkg.exports)) out.push(...(typeof target === 'string' ? [target] : Object.values(target)));
  return out.map((p) => p.replace(/^\.\//, ''));
}

t.test('every entry point named in package.json is in the packed tarball', async (t) => {
  const [packed] = JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { encoding: 'utf8' })) as [{ files: { path: string }[] }];
  const files = new Set(packed.files.map((f) => f.path));
  for (const p of entryPoints()) {
    t.ok(existsSync(p), `${p} exists`);
    t.ok(files.has(p), `${p} is packed`);
  }
  t.ok(files.has('LICENSE'), 'LICENSE is packed');
  t.notOk([...files].some((f) => f.startsWith('test/') || f.startsWith('src/') && !f.startsWith('src/store/migrations/')), 'no tests or sources besides the migrations');
});

t.test('the package import resolves through the exports map', async (t) => {
  const api = await import('portcullis');
  for (const name of ['main', 'startPortcullis', 'loadConfigFile', 'parseConfig', 'createLogger'] as const) t.type(api[name], 'function', name);
  t.ok(new api.ConfigError(['x']) instanceof Error, 'ConfigError');
  t.equal(api.PROBLEMS['route-not-found'].status, 404);
  t.equal(api.PROBLEM_TYPE_BASE, 'urn:portcullis:problem:');
  const schema = await import('portcullis/config.schema.json', { with: { type: 'json' } });
  t.type(schema.default, 'object', 'the config schema is importable');
});
