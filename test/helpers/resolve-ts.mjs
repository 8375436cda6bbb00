// Loaded before every test file (package.json, tap's node-arg): Node runs the TypeScript
// sources as they are, stripping their types, and this resolves an import of `x.js` (by
// relative path, absolute path or file URL) to `x.ts` when there is no `x.js` but there is
// an `x.ts`, as the compiler reads it.
import { existsSync } from 'node:fs';
import { registerHooks } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

const cwd = pathToFileURL(`${process.cwd()}/`);

registerHooks({
  resolve(specifier, context, nextResolve) {
    if (specifier.endsWith('.js') && /^(\.|\/|file:)/.test(specifier)) {
      const url = new URL(specifier, context.parentURL ?? cwd);
      const js = fileURLToPath(url);
      const ts = `${js.slice(0, -3)}.ts`;
      if (!existsSync(js) && existsSync(ts)) return nextResolve(pathToFileURL(ts).href, context);
    }
    return nextResolve(specifier, context);
  },
});
