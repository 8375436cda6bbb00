import t from 'tap';
import type { Test } from 'tap';
import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import { extractCredential, type ExtractOptions } from '../../src/credentials/extract.js';
import { GatewayError } from '../../src/http/problem.js';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import { normalizeTarget } from '../../src/http/normalize-path.js';
import { compileRoutes, matchRoute, splitPath, type CompiledRoute } from '../../src/http/match.js';
import type { RouteConfig } from '../../src/config/schema.js';

// Properties over random input for the pure functions every request and every config load
// go through. Path normalization itself has its own property suite
// (test/http/normalize-path.property.test.ts); here it is only a means to routing.

const RUNS = Number(process.env.PROPERTY_RUNS ?? 2_000);

/** Runs a property and reports the shrunk counterexample as a test failure. */
function holds<Ts>(t: Test, name: string, property: fc.IProperty<Ts>, runs = RUNS): void {
  const seed = process.env.PROPERTY_SEED === undefined ? undefined : Number(process.env.PROPERTY_SEED);
  const out = fc.check(property, { numRuns: runs, ...(seed === undefined ? {} : { seed }) });
  if (out.failed) t.fail(`${name}: seed ${out.seed} (PROPERTY_SEED to replay): ${String(out.errorInstance)}`);
  else t.pass(`${name} (${out.numRuns} runs)`);
}

// ---------------------------------------------------------------------------------------
// Credential extraction

const b64 = (v: string) => Buffer.from(v).toString('base64url');
const JWT = `${b64('{"alg":"HS256"}')}.${b64('{"sub":"a"}')}.${b64('sig')}`;
const credentialish = fc.oneof(
  fc.constantFrom('', ' ', 'pcl_abc', JWT, `${JWT}x`, 'host:443:' + JWT, 'a:b:c', ':', '::', 'x'.repeat(300), 'k\u00e9y', '\t', 'Bearer', 'a b'),
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
);
const authorization = fc.oneof(
  fc.tuple(fc.constantFrom('Bearer', 'bearer', 'BEARER', 'ApiKey', 'Basic', 'Token', '', 'Bearer\t', 'Bear\u0000er'), fc.constantFrom(' ', '  ', '\t', ''), credentialish).map(([s, sp, v]) => s + sp + v),
  credentialish,
);
const headerValue = fc.oneof(credentialish, fc.array(credentialish, { maxLength: 3 }));
const headerName = fc.constantFrom('x-api-key', 'X-Api-Key', 'x-legacy', 'cookie', 'x-other', 'authorization');
const headers = fc
  .record({
    authorization: fc.option(fc.oneof(authorization, fc.array(authorization, { maxLength: 2 })), { nil: undefined }),
    extra: fc.array(fc.tuple(headerName, headerValue), { maxLength: 4 }),
  })
  .map(({ authorization: a, extra }) => {
    const h: Record<string, unknown> = {};
    if (a !== undefined) h.authorization = a;
    for (const [n, v] of extra) h[n.toLowerCase()] = v;
    return h as IncomingHttpHeaders;
  });
const queryPiece = fc.oneof(
  fc.constantFrom('api_key', 'token', 'api%5Fkey', 'api+key', 'api_key[]', 'API_KEY', '=', '&', '&&', '%', '%zz', '%E9', '+', '%2B', 'x=1', 'a:b'),
  credentialish.map((s) => encodeURIComponent(s)),
  fc.string({ maxLength: 6 }),
);
const query = fc.oneof(fc.constant(''), fc.array(queryPiece, { maxLength: 8 }).map((p) => '?' + p.join('')));
const extractOptions: fc.Arbitrary<ExtractOptions> = fc.record({
  schemes: fc.subarray(['Bearer', 'ApiKey', 'Token']),
  headers: fc.subarray(['x-api-key', 'x-legacy']),
  queryParams: fc.subarray(['api_key', 'token', 'api key']),
  maxBytes: fc.constantFrom(16, 256, 8192),
});

function formName(s: string): string | null {
  try {
    return decodeURIComponent(s.replaceAll('+', ' '));
  } catch {
    return null;
  }
}

t.test('credential extraction', async (t) => {
  holds(t, 'never throws anything but a GatewayError', fc.property(headers, query, extractOptions, (h, q, o) => {
    try {
      extractCredential(h, q, o);
    } catch (err) {
      if (!(err instanceof GatewayError)) throw new Error(`threw ${String(err)}`);
      if (err.code !== 'bad-request' && err.code !== 'key-invalid') throw new Error(`unexpected code ${err.code}`);
    }
  }));
  holds(t, 'what it returns is a usable credential and a query without credential parameters', fc.property(headers, query, extractOptions, (h, q, o) => {
    let r: ReturnType<typeof extractCredential>;
    try {
      r = extractCredential(h, q, o);
    } catch {
      return;
    }
    if (r.credential !== null) {
      const v = r.credential.value;
      if (v === '' || v.includes(':')) throw new Error(`credential ${JSON.stringify(v)} is empty or keeps a preamble`);
      if (Buffer.byteLength(v, 'latin1') > o.maxBytes) throw new Error('credential over maxBytes');
    }
    if (r.query !== '' && !r.query.startsWith('?')) throw new Error(`query ${JSON.stringify(r.query)} lost its ?`);
    if (r.query !== q) {
      for (const pair of r.query.slice(1).split('&')) {
        const name = formName(pair.split('=', 1)[0]!);
        if (name !== null && o.queryParams.includes(name)) throw new Error(`credential parameter ${name} still in ${r.query}`);
      }
    } else if (o.queryParams.length > 0 && q.length > 1) {
      for (const pair of q.slice(1).split('&')) {
        const name = formName(pair.split('=', 1)[0]!);
        if (name !== null && o.queryParams.includes(name)) throw new Error(`credential parameter ${name} forwarded in ${q}`);
      }
    }
  }));
});

// ---------------------------------------------------------------------------------------
// Config loading

const LOCATED = /^[^:]+:\d+:\d+ /;
const FILE = 'gateway.config.yaml';
const shipped = readFileSync(new URL('../../gateway.config.yaml', import.meta.url), 'utf8');

/** parseConfig must either load or throw ConfigError whose every line is located. */
function loadsOrLocates(text: string): void {
  try {
    parseConfig(text, FILE, {});
  } catch (err) {
    if (!(err instanceof ConfigError)) throw new Error(`threw ${(err as Error)?.name}: ${(err as Error)?.message} on ${JSON.stringify(text.slice(0, 400))}`);
    if (err.problems.length === 0) throw new Error('ConfigError without problems');
    for (const p of err.problems) if (!LOCATED.test(p)) throw new Error(`problem not located: ${JSON.stringify(p)}`);
  }
}

// YAML that reaches the parser's corners: anchors and aliases (also recursive), tags, flow
// collections, block scalars, complex keys, directives, interpolation, prototype keys.
const yamlToken = fc.oneof(
  { weight: 5, arbitrary: fc.constantFrom('listen', 'routes', 'upstreams', 'api', 'url', 'match', 'path', 'roles', 'store', 'jwt', 'issuers', 'apiKeys', 'cache', 'ttl', 'timeout', 'revocation', '__proto__', 'constructor', 'prototype') },
  { weight: 4, arbitrary: fc.constantFrom(': ', ':', '- ', '\n', '\n  ', '\n    ', '\n- ', '{', '}', '[', ']', ', ', '#', ' ', '  ', '"', "'", '|', '>', '? ') },
  { weight: 2, arbitrary: fc.constantFrom('&a ', '*a', '&b ', '*b', '!!str ', '!!int ', '!!binary ', '!!set ', '!!omap ', '!!timestamp ', '!!float ', '!custom ', '<<: ', '%YAML 1.2\n---\n', '---\n', '...\n', '~', 'null', 'true', '0x1F', '1e400', '-0', '.nan') },
  { weight: 2, arbitrary: fc.constantFrom('"http://127.0.0.1:3000"', '/**', '"/films/*/reviews"', '30s', '720h', '99999999999999999999999d', '${X}', '${X:-y}', '$${', '${', '\\u0000', '\t', '\r\n', '\u00e9', '\ufeff') },
  { weight: 1, arbitrary: fc.string({ maxLength: 6 }) },
);
const yamlish = fc.array(yamlToken, { maxLength: 60 }).map((p) => p.join(''));

const lines = shipped.split('\n');
type Mutation = (ls: string[]) => string[];
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.nat().map((i): Mutation => (ls) => ls.filter((_, j) => j !== i % ls.length)),
  fc.nat().map((i): Mutation => (ls) => [...ls.slice(0, i % ls.length), ls[i % ls.length]!, ...ls.slice(i % ls.length)]),
  fc.tuple(fc.nat(), fc.nat()).map(([i, j]): Mutation => (ls) => {
    const out = [...ls];
    const a = i % out.length;
    const b = j % out.length;
    [out[a], out[b]] = [out[b]!, out[a]!];
    return out;
  }),
  fc.tuple(fc.nat(), yamlToken).map(([i, tok]): Mutation => (ls) => {
    const out = [...ls];
    const a = i % out.length;
    const line = out[a]!;
    const at = line.length === 0 ? 0 : i % (line.length + 1);
    out[a] = line.slice(0, at) + tok + line.slice(at);
    return out;
  }),
  fc.tuple(fc.nat(), fc.nat({ max: 8 })).map(([i, n]): Mutation => (ls) => {
    const out = [...ls];
    const a = i % out.length;
    out[a] = out[a]!.slice(n) || ' '.repeat(n) + out[a];
    return out;
  }),
  // Replace a value: everything after the first ': ' of a line.
  fc.tuple(fc.nat(), fc.oneof(yamlToken, yamlish)).map(([i, v]): Mutation => (ls) => {
    const out = [...ls];
    const a = i % out.length;
    const c = out[a]!.indexOf(': ');
    if (c !== -1) out[a] = out[a]!.slice(0, c + 2) + v;
    return out;
  }),
  fc.nat().map((i): Mutation => (ls) => ls.join('\n').slice(0, i % (shipped.length + 1)).split('\n')),
).map((m): Mutation => (ls) => (ls.length === 0 ? ls : m(ls)));

// Counterexamples the properties found, kept as plain cases: before the fixes in load.ts the
// alias ones threw ReferenceError / RangeError, `__proto__` was accepted as a key that
// reshaped the object, and `constructor` passed as an upstream name (the first request
// then crashed the process).
const base = 'upstreams: { api: { url: "http://127.0.0.1:3000" } }\nroutes: [ { match: { path: "/**" }, upstream: api } ]\n';
const corners: Array<[name: string, text: string, problem: RegExp]> = [
  ['alias without an anchor', '*b', /^gateway\.config\.yaml:1:1 Unresolved alias/],
  ['alias without an anchor, nested', 'routes: *x', /^gateway\.config\.yaml:1:9 Unresolved alias/],
  ['alias inside its own anchor', 'a: &a [*a]', /^gateway\.config\.yaml:1:8 an alias refers to a node that contains it/],
  ['alias explosion', 'a: &a [a,a,a,a,a,a,a,a,a,a]\nb: &b [' + '*a,'.repeat(20) + '*a]\nc: [' + '*b,'.repeat(20) + '*b]', /Excessive alias count/],
  ['__proto__ at the top level', '__proto__: { routes: [ { match: { path: "/**" }, upstream: api } ] }\nupstreams: { api: { url: "http://127.0.0.1:3000" } }', /unknown key "__proto__" in the top level/],
  ['__proto__ inside a section', base + 'listen: { __proto__: { port: 1 } }', /^gateway\.config\.yaml:3:11 unknown key "__proto__" in listen/],
  ['upstream named like an Object property', 'upstreams: { api: { url: "http://127.0.0.1:3000" } }\nroutes: [ { match: { path: "/**" }, upstream: constructor } ]', /no upstream named "constructor"/],
  ['upstream named __proto__', 'upstreams: { __proto__: { url: "http://127.0.0.1:3000" } }\nroutes: [ { match: { path: "/**" }, upstream: __proto__ } ]', /no upstream named "__proto__"/],
];

t.test('config corners found by the properties', async (t) => {
  for (const [name, text, problem] of corners) {
    let problems: readonly string[] = [];
    try {
      parseConfig(text, FILE, {});
    } catch (err) {
      if (!(err instanceof ConfigError)) {
        t.fail(`${name}: threw ${String(err)}`);
        continue;
      }
      problems = err.problems;
    }
    t.ok(problems.some((p) => problem.test(p)), `${name}: ${problems.join(' | ') || 'accepted'}`);
    t.ok(problems.every((p) => LOCATED.test(p)), `${name}: every problem located`);
  }
});

t.test('config loading', async (t) => {
  t.doesNotThrow(() => parseConfig(shipped, FILE, {}), 'the shipped config loads');
  holds(t, 'random YAML-ish text: loads or ConfigError with located problems', fc.property(yamlish, loadsOrLocates));
  holds(t, 'random mutations of the shipped config: loads or ConfigError with located problems', fc.property(fc.array(mutation, { minLength: 1, maxLength: 4 }), (ms) => {
    let ls = lines;
    for (const m of ms) ls = m(ls);
    loadsOrLocates(ls.join('\n'));
  }));
});

// Every duration the gateway arms a timer with must fit one: Node.js silently arms a longer
// timer for 1 ms (a 30d shutdown.drainTimeout cut in-flight requests at once; a 30d
// revocation.timeout would fail every check). Other durations must at least be finite.
const timerFields: Array<[section: string, yaml: (v: string) => string, read: (c: ReturnType<typeof parseConfig>['config']) => number]> = [
  ['listen.headersTimeout', (v) => `listen: { headersTimeout: ${v} }`, (c) => c.listen.headersTimeout],
  ['listen.requestTimeout', (v) => `listen: { requestTimeout: ${v} }`, (c) => c.listen.requestTimeout],
  ['listen.keepAliveTimeout', (v) => `listen: { keepAliveTimeout: ${v} }`, (c) => c.listen.keepAliveTimeout],
  ['upstreams.api.timeout', (v) => `upstreams: { api: { url: "http://127.0.0.1:3000", timeout: ${v} } }`, (c) => c.upstreams.api!.timeout],
  ['upstreams.api.connectTimeout', (v) => `upstreams: { api: { url: "http://127.0.0.1:3000", connectTimeout: ${v} } }`, (c) => c.upstreams.api!.connectTimeout],
  ['revocation.timeout', (v) => `revocation: { timeout: ${v} }`, (c) => c.revocation.timeout],
  ['jwt.jwksCooldown', (v) => `jwt: { jwksCooldown: ${v} }`, (c) => c.jwt.jwksCooldown],
  ['jwt.jwksCacheMaxAge', (v) => `jwt: { jwksCacheMaxAge: ${v} }`, (c) => c.jwt.jwksCacheMaxAge],
  ['jwt.jwksTimeout', (v) => `jwt: { jwksTimeout: ${v} }`, (c) => c.jwt.jwksTimeout],
  ['apiKeys.lastUsedInterval', (v) => `apiKeys: { lastUsedInterval: ${v} }`, (c) => c.apiKeys.lastUsedInterval],
  ['shutdown.drainTimeout', (v) => `shutdown: { drainTimeout: ${v} }`, (c) => c.shutdown.drainTimeout],
];
const durationText = fc.tuple(
  fc.oneof(fc.nat().map(String), fc.bigInt({ min: 0n, max: 10n ** 40n }).map(String), fc.tuple(fc.nat(), fc.nat({ max: 999 })).map(([a, b]) => `${a}.${b}`)),
  fc.constantFrom('ms', 's', 'm', 'h', 'd'),
).map(([n, u]) => n + u);

t.test('timer durations', async (t) => {
  holds(t, 'a timer duration either fits a Node.js timer or is a located ConfigError', fc.property(fc.constantFrom(...timerFields), durationText, ([name, yaml, read], d) => {
    const lines = [yaml(d)];
    if (!name.startsWith('upstreams.')) lines.push('upstreams: { api: { url: "http://127.0.0.1:3000" } }');
    lines.push('routes: [ { match: { path: "/**" }, upstream: api } ]');
    let ms: number;
    try {
      ms = read(parseConfig(lines.join('\n'), FILE, {}).config);
    } catch (err) {
      if (!(err instanceof ConfigError) || !err.problems.every((p) => LOCATED.test(p))) throw err;
      return;
    }
    if (!(Number.isSafeInteger(ms) && ms >= 0 && ms <= 2_147_483_647)) throw new Error(`${name}: ${d} loaded as ${ms} ms`);
  }));
  holds(t, 'any other duration loads as a finite number of milliseconds', fc.property(durationText, (d) => {
    try {
      const c = parseConfig(`apiKeys: { defaultTtl: ${d} }\nupstreams: { api: { url: "http://127.0.0.1:3000" } }\nroutes: [ { match: { path: "/**" }, upstream: api } ]`, FILE, {}).config;
      if (!Number.isSafeInteger(c.apiKeys.defaultTtl)) throw new Error(`${d} loaded as ${c.apiKeys.defaultTtl}`);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
    }
  }));
});

// ---------------------------------------------------------------------------------------
// Routing of normalized targets

const segment = fc.constantFrom('admin', 'films', 'reviews', 'a', 'b', 'x.y', '~u', '%C3%A9', '%3F', '%2A', '%25', ':', '@', '!');
const patternArb = fc
  .tuple(fc.array(fc.oneof({ weight: 4, arbitrary: segment }, { weight: 1, arbitrary: fc.constant('*') }), { maxLength: 4 }), fc.constantFrom('', '', '/**', '/'))
  .map(([segs, tail]) => '/' + segs.join('/') + (segs.length === 0 && tail !== '' ? tail.slice(1) : tail))
  .filter((p) => {
    const n = normalizeTarget(p, { allowPathParams: false });
    return n.ok && n.path === p && !p.includes('**/');
  });
const routesArb = fc.array(fc.record({ path: patternArb, methods: fc.option(fc.subarray(['GET', 'POST']), { nil: undefined }) }), { minLength: 1, maxLength: 6 }).map((rs) =>
  compileRoutes(
    rs.map(
      (r): RouteConfig => ({
        match: { path: r.path, ...(r.methods?.length ? { methods: r.methods } : {}) },
        public: false,
        scopes: [],
        auth: ['jwt', 'apiKey'],
        rateLimit: [],
        upstream: 'api',
      }),
    ),
    new Map(),
  ),
);
const targetPiece = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('/', '//', '.', '..', '/./', '/../', 'admin', 'films', 'reviews', 'a', 'b', 'x.y', '~u', ':', '@', '!') },
  { weight: 4, arbitrary: fc.constantFrom('%2e', '%2E%2e', '%61dmin', 'adm%69n', '%66ilms', '%7E', '%41', '%2A', '%25', '%3F', '%3f', '%C3%A9', '%c3%a9', '%20', '%3B') },
  { weight: 1, arbitrary: fc.constantFrom('?', '?q=/admin', '?a=%2F&b', '#', '%2F', '%5C', ';', '\\', '%00', '%zz', '%C0%AE') },
);
const targetArb = fc.array(targetPiece, { maxLength: 14 }).map((p) => '/' + p.join(''));
const method = fc.constantFrom('GET', 'POST', 'HEAD');

function routeOf(routes: readonly CompiledRoute[], m: string, path: string): number {
  return matchRoute(routes, m, undefined, splitPath(path))?.index ?? -1;
}

function decodedSegments(path: string): string[] {
  return splitPath(path).map((s) => decodeURIComponent(s));
}

t.test('routing of normalized targets', async (t) => {
  holds(t, 'the forwarded path and query normalize to themselves and match the same route', fc.property(routesArb, targetArb, method, (routes, target, m) => {
    const n = normalizeTarget(target, { allowPathParams: false });
    if (!n.ok) return;
    const forwarded = n.path + n.query;
    const again = normalizeTarget(forwarded, { allowPathParams: false });
    if (!again.ok) throw new Error(`forwarded ${forwarded} is refused: ${again.reason}`);
    if (again.path !== n.path || again.query !== n.query) throw new Error(`forwarded ${forwarded} normalizes to ${again.path}${again.query}`);
    const r1 = routeOf(routes, m, n.path);
    const r2 = routeOf(routes, m, again.path);
    if (r1 !== r2) throw new Error(`${target} matched route ${r1}, forwarded as ${forwarded} it matches ${r2}`);
  }));
  holds(t, 'an upstream parsing the forwarded target as a URL sees the matched path', fc.property(routesArb, targetArb, method, (routes, target, m) => {
    const n = normalizeTarget(target, { allowPathParams: false });
    if (!n.ok) return;
    const seen = new URL(n.path + n.query, 'http://upstream.invalid');
    if (seen.pathname !== n.path) throw new Error(`upstream sees path ${seen.pathname}, gateway matched ${n.path}`);
    if (routeOf(routes, m, seen.pathname) !== routeOf(routes, m, n.path)) throw new Error('route differs for the upstream path');
  }));
  holds(t, 'an upstream that percent-decodes before routing lands on the same route', fc.property(routesArb, targetArb, method, (routes, target, m) => {
    const n = normalizeTarget(target, { allowPathParams: false });
    if (!n.ok) return;
    const decodedPatterns = routes.map((r) => ({ ...r, segments: r.segments.map((s) => (s === '*' ? s : decodeURIComponent(s))) }));
    const segs = decodedSegments(n.path);
    const viaDecoded = matchRoute(decodedPatterns, m, undefined, segs)?.index ?? -1;
    if (viaDecoded !== routeOf(routes, m, n.path)) throw new Error(`${n.path}: decoded path matches route ${viaDecoded}, gateway matched ${routeOf(routes, m, n.path)}`);
  }));
});
