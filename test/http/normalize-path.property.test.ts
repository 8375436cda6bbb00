import t from 'tap';
import fc from 'fast-check';
import { normalizeTarget } from '../../src/http/normalize-path.js';

// Targets built from the pieces bypasses are made of, so the generator reaches the
// interesting paths far more often than uniform random strings would.
const piece = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('/', '//', '.', '..', '/./', '/../', 'a', 'Z', '0', '~', '-', '_', 'admin', ':', '@', '!', '+', '=') },
  { weight: 4, arbitrary: fc.constantFrom('%2e', '%2E', '%2e%2e', '.%2e', '%2e.', '%2f', '%2F', '%5c', '%25', '%252e', '%3a', '%3B', '%7e', '%41', '%20', '%23', '%3F') },
  { weight: 2, arbitrary: fc.constantFrom('%C3%A9', '%c3', '%a9', '%C0%AE', '%E2%82%AC', '%F0%9F%98%80', '%ED%A0%80', '%C2%85', '%80', '%FF') },
  { weight: 2, arbitrary: fc.constantFrom(';', ';x=1', '\\', '#', '?', '%', '%G', '{', '|', '^', '[', '"', '`', ' ', '\t', '\u0000', '\u00e9', '\uff0e') },
  { weight: 1, arbitrary: fc.tuple(fc.integer({ min: 0, max: 255 }), fc.boolean()).map(([b, lower]) => {
    const hex = b.toString(16).padStart(2, '0');
    return '%' + (lower ? hex : hex.toUpperCase());
  }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 4 }) },
);
const target = fc.tuple(fc.constantFrom('/', '/', '/', '', 'http://h'), fc.array(piece, { maxLength: 24 })).map(([head, parts]) => head + parts.join(''));
const options = fc.record({ allowPathParams: fc.boolean() });

function checkOutput(path: string, allowPathParams: boolean): void {
  // Idempotent: a second pass accepts and keeps it.
  const again = normalizeTarget(path, { allowPathParams });
  if (!again.ok || again.path !== path || again.query !== '') throw new Error(`not a fixed point: ${JSON.stringify(path)} -> ${JSON.stringify(again)}`);
  // No dot segments, no empty segments (a trailing slash is the only empty last segment).
  if (!path.startsWith('/')) throw new Error(`no leading slash: ${path}`);
  const segs = path.split('/').slice(1);
  if (segs.at(-1) === '') segs.pop();
  for (const s of segs) if (s === '' || s === '.' || s === '..') throw new Error(`bad segment ${JSON.stringify(s)} in ${path}`);
  // Canonical encodings only: upper-case hex, nothing that decodes to an unreserved character.
  for (const m of path.matchAll(/%(..)/g)) {
    const hex = m[1]!;
    if (hex !== hex.toUpperCase()) throw new Error(`lower-case hex in ${path}`);
    if (/[A-Za-z0-9\-._~]/.test(String.fromCharCode(parseInt(hex, 16)))) throw new Error(`encoded unreserved in ${path}`);
  }
  // WHATWG URL parsing leaves it alone.
  const whatwg = new URL(path, 'http://x').pathname;
  if (whatwg !== path) throw new Error(`WHATWG changes ${JSON.stringify(path)} to ${JSON.stringify(whatwg)}`);
}

t.test('accepted outputs are canonical fixed points, and nothing throws', async (t) => {
  let accepted = 0;
  fc.assert(
    fc.property(target, options, (input, opts) => {
      const got = normalizeTarget(input, opts);
      if (typeof got.ok !== 'boolean') return false;
      if (!got.ok) return typeof got.reason === 'string' && got.reason.length > 0;
      accepted++;
      checkOutput(got.path, opts.allowPathParams);
      return input.endsWith(got.query);
    }),
    { numRuns: 20_000 },
  );
  // Guard against a generator that only ever produces rejected targets.
  t.ok(accepted > 2_000, `${accepted} accepted targets were checked`);
});

t.test('arbitrary strings never throw', async (t) => {
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 64 }), options, (s, opts) => {
      const a = normalizeTarget(s, opts);
      const b = normalizeTarget('/' + s, opts);
      if (b.ok) checkOutput(b.path, opts.allowPathParams);
      return typeof a.ok === 'boolean' && typeof b.ok === 'boolean';
    }),
    { numRuns: 10_000 },
  );
  t.pass('no input threw');
});

t.test('dot-segment resolution agrees with WHATWG once slashes are merged', async (t) => {
  // For targets made of plain characters, slashes and literal dots only, our result must be
  // what a browser resolves once repeated slashes are merged first.
  const plain = fc.array(fc.constantFrom('/', 'a', 'b', '.', '..', '/./', '/../', 'c.d'), { maxLength: 16 }).map((p) => '/' + p.join(''));
  fc.assert(
    fc.property(plain, (input) => {
      const got = normalizeTarget(input, { allowPathParams: false });
      const merged = input.replace(/\/{2,}/g, '/');
      const segs = merged.split('/').slice(1);
      let depth = 0;
      let climbs = false;
      for (const s of segs) {
        if (s === '..') depth--;
        else if (s !== '.' && s !== '') depth++;
        if (depth < 0) climbs = true;
      }
      if (climbs) return !got.ok;
      return got.ok && got.path === new URL(merged, 'http://x').pathname;
    }),
    { numRuns: 5_000 },
  );
  t.pass('agrees with WHATWG');
});
