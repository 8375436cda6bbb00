import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, visit, type Document, type Node } from 'yaml';
import { configSchema, type RawConfig } from './schema.js';
import { interpolate } from './interpolate.js';
import { normalizeTarget } from '../http/normalize-path.js';
import { parseStoreUrl } from '../store/open.js';
import { compileRoutes, type CompiledRoute, findShadowedRoutes } from '../http/match.js';
import { readTlsFiles, type TlsFiles } from '../net/tls.js';

/** The validated, deep-frozen configuration with compiled routes. Never mutated; a reload builds a new one. */
export interface GatewayConfig extends RawConfig {
  readonly file: string;
  readonly compiledRoutes: readonly CompiledRoute[];
  /** Role name → rank (index in `roles`). */
  readonly roleRanks: ReadonlyMap<string, number>;
  /** PEM text of the files `listen.tls` and `upstreams.*.tls` name, read with the config. */
  readonly tlsFiles: TlsFiles;
}

/** A config that cannot be used; `problems` are `FILE:LINE:COL message` lines. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly code = 'config-invalid';
  constructor(readonly problems: readonly string[]) {
    super(problems.join('\n'));
  }
}

export interface LoadResult {
  config: GatewayConfig;
  /** Non-fatal findings (`FILE:LINE:COL warning: …`), e.g. shadowed routes. */
  warnings: string[];
}

/** Rank of a role in the ordered `roles` list; -1 (below everything) when it is not listed. */
export function roleRank(config: Pick<GatewayConfig, 'roleRanks'>, role: string): number {
  return config.roleRanks.get(role) ?? -1;
}

type Path = ReadonlyArray<string | number>;

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value as Record<string, unknown>)) deepFreeze(v);
  }
  return value;
}

class Locator {
  constructor(private readonly doc: Document, private readonly lines: LineCounter, private readonly file: string) {}

  /** Position of the node at `path` (or of its nearest existing ancestor); for a missing key, its parent map. */
  at(path: Path, key?: string): string {
    let node: unknown = this.doc.contents;
    let offset = 0;
    const set = (n: unknown) => {
      const r = (n as Node | undefined)?.range;
      if (r) offset = r[0];
    };
    set(node);
    for (const seg of path) {
      if (isMap(node)) {
        const pair = node.items.find((p) => (isScalar(p.key) ? p.key.value : p.key) === seg);
        if (!pair) break;
        set(pair.value ?? pair.key);
        node = pair.value;
      } else if (isSeq(node) && typeof seg === 'number') {
        node = node.items[seg];
        set(node);
      } else break;
    }
    if (key !== undefined && isMap(node)) {
      const pair = node.items.find((p) => (isScalar(p.key) ? p.key.value : p.key) === key);
      if (pair) set(pair.key);
    }
    const { line, col } = this.lines.linePos(offset);
    return `${this.file}:${line}:${col}`;
  }
}

/**
 * Maps every string in the parsed document. An alias to a node that contains it makes the
 * JS value cyclic: `cyclic` reports it instead of recursing forever.
 */
function walkStrings(
  value: unknown,
  path: (string | number)[],
  visitString: (s: string, path: Path) => string,
  cyclic: (path: Path) => void,
  ancestors: Set<object> = new Set(),
): unknown {
  if (typeof value === 'string') return visitString(value, path);
  if (!value || typeof value !== 'object') return value;
  if (ancestors.has(value)) {
    cyclic(path);
    return undefined;
  }
  ancestors.add(value);
  try {
    if (Array.isArray(value)) return value.map((v, i) => walkStrings(v, [...path, i], visitString, cyclic, ancestors));
    // fromEntries defines own properties: a `__proto__` key stays a key (and is refused as
    // unknown) instead of replacing the object's prototype.
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, walkStrings(v, [...path, k], visitString, cyclic, ancestors)]));
  } finally {
    ancestors.delete(value);
  }
}

/** Position of the first alias named `name` (for "unresolved alias" errors), else the document start. */
function aliasPosition(doc: Document, name: string | undefined): number {
  let at = doc.contents?.range?.[0] ?? 0;
  if (name === undefined) return at;
  visit(doc, {
    Alias(_, node) {
      if (node.source === name && node.range) {
        at = node.range[0];
        return visit.BREAK;
      }
      return undefined;
    },
  });
  return at;
}

/** Parses and validates config text; throws ConfigError with every problem found. */
export function parseConfig(text: string, file: string, env: Readonly<Record<string, string | undefined>> = process.env): LoadResult {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const where = new Locator(doc, lines, file);
  const problems: string[] = [];
  for (const e of doc.errors) {
    const { line, col } = e.linePos?.[0] ?? lines.linePos(e.pos[0]);
    problems.push(`${file}:${line}:${col} ${e.message.split('\n')[0]}`);
  }
  if (problems.length) throw new ConfigError(problems);

  let js: unknown;
  try {
    js = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    // yaml throws for an alias without an anchor before it and for alias explosions.
    const message = err instanceof Error ? err.message : String(err);
    const { line, col } = lines.linePos(aliasPosition(doc, /: (\S+)$/.exec(message)?.[1]));
    throw new ConfigError([`${file}:${line}:${col} ${message}`]);
  }
  const raw = walkStrings(
    js ?? {},
    [],
    (s, path) => {
      const r = interpolate(s, env);
      if (r.ok) return r.value;
      problems.push(`${where.at(path)} environment variable ${r.missing} is not set (write \${${r.missing}:-default} to give a default)`);
      return '';
    },
    (path) => problems.push(`${where.at(path)} an alias refers to a node that contains it`),
  );
  if (problems.length) throw new ConfigError(problems);

  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const path = issue.path.filter((p): p is string | number => typeof p !== 'symbol');
      if (issue.code === 'unrecognized_keys') {
        for (const key of issue.keys) problems.push(`${where.at(path, key)} unknown key "${key}" in ${path.join('.') || 'the top level'}`);
      } else {
        problems.push(`${where.at(path)} ${path.join('.') || 'config'}: ${issue.message}`);
      }
    }
    throw new ConfigError(problems);
  }
  const cfg = parsed.data;

  // Cross-field rules the schema cannot state.
  const roleRanks = new Map<string, number>();
  cfg.roles.forEach((r, i) => {
    if (roleRanks.has(r)) problems.push(`${where.at(['roles', i])} role "${r}" is listed twice`);
    roleRanks.set(r, i);
  });
  cfg.routes.forEach((r, i) => {
    // Own keys only: `constructor` or `toString` must not pass for an upstream name.
    if (!Object.hasOwn(cfg.upstreams, r.upstream)) problems.push(`${where.at(['routes', i, 'upstream'])} routes.${i}.upstream: no upstream named "${r.upstream}" (known: ${Object.keys(cfg.upstreams).join(', ')})`);
    if (r.minRole !== undefined && !roleRanks.has(r.minRole)) problems.push(`${where.at(['routes', i, 'minRole'])} routes.${i}.minRole: "${r.minRole}" is not in roles [${cfg.roles.join(', ')}]`);
    const n = normalizeTarget(r.match.path, { allowPathParams: cfg.allowPathParams });
    if (!n.ok) problems.push(`${where.at(['routes', i, 'match', 'path'])} routes.${i}.match.path: not a valid path (${n.reason})`);
    else if (n.path !== r.match.path || n.query !== '') problems.push(`${where.at(['routes', i, 'match', 'path'])} routes.${i}.match.path: write the pattern as requests are matched: "${n.path}"`);
    if (r.public && (r.minRole !== undefined || r.scopes.length > 0 || r.audience !== undefined)) problems.push(`${where.at(['routes', i, 'public'])} routes.${i}: a public route cannot also require minRole, scopes or audience`);
  });
  const names = new Set<string>();
  cfg.jwt.issuers.forEach((iss, i) => {
    if (names.has(iss.name)) problems.push(`${where.at(['jwt', 'issuers', i, 'name'])} issuer name "${iss.name}" is used twice`);
    names.add(iss.name);
    if (iss.issuer === undefined && cfg.jwt.issuers.some((o, j) => j < i && o.issuer === undefined)) problems.push(`${where.at(['jwt', 'issuers', i])} only one issuer may omit "issuer" (it takes the tokens that carry no iss)`);
    if (iss.defaultRole !== undefined && !roleRanks.has(iss.defaultRole)) problems.push(`${where.at(['jwt', 'issuers', i, 'defaultRole'])} defaultRole "${iss.defaultRole}" is not in roles`);
  });
  try {
    const loc = parseStoreUrl(cfg.store.url);
    if (cfg.workers !== 1 && loc.kind === 'sqlite' && loc.file === undefined) {
      problems.push(`${where.at(['workers'])} workers: several workers need a store they can all open: sqlite://FILE or postgres:// (each process would have its own sqlite://memory)`);
    }
  } catch (err) {
    problems.push(`${where.at(['store', 'url'])} store.url: ${(err as Error).message}`);
  }
  if (cfg.revocation.externalKeys.length > 0 && cfg.revocation.redis.trim() === '') {
    problems.push(`${where.at(['revocation', 'externalKeys'])} revocation.externalKeys: needs revocation.redis (the keys are read from the Redis the API writes them to)`);
  }
  const policyNames = new Set<string>();
  cfg.rateLimits.policies.forEach((pol, i) => {
    if (policyNames.has(pol.name)) problems.push(`${where.at(['rateLimits', 'policies', i, 'name'])} rate-limit policy "${pol.name}" is defined twice`);
    policyNames.add(pol.name);
  });
  cfg.routes.forEach((r, i) => {
    r.rateLimit.forEach((name, j) => {
      if (!policyNames.has(name)) problems.push(`${where.at(['routes', i, 'rateLimit', j])} routes.${i}.rateLimit: no policy named "${name}" in rateLimits.policies`);
    });
  });
  const idh = Object.values(cfg.identity.headers);
  if (new Set(idh).size !== idh.length) problems.push(`${where.at(['identity', 'headers'])} identity.headers: two identity fields share one header name`);
  const tlsFiles = readTlsFiles(cfg, dirname(file), (path, message) => problems.push(`${where.at(path)} ${path.join('.')}: ${message}`));
  if (problems.length) throw new ConfigError(problems);

  const compiledRoutes = compileRoutes(cfg.routes, roleRanks);
  const warnings: string[] = [];
  for (const s of findShadowedRoutes(compiledRoutes)) {
    warnings.push(`${where.at(['routes', s.index, 'match'])} warning: route ${s.index} (${cfg.routes[s.index]!.match.path}) can never match: route ${s.by} (${cfg.routes[s.by]!.match.path}) before it matches everything it would`);
  }
  const config: GatewayConfig = deepFreeze({ ...cfg, file, compiledRoutes, roleRanks, tlsFiles });
  return { config, warnings };
}

/** Reads, interpolates and validates a config file. Throws ConfigError (`FILE:LINE:COL message`). */
export async function loadConfigFile(file: string, env: Readonly<Record<string, string | undefined>> = process.env): Promise<LoadResult> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError([`${file}:1:1 cannot read the config file: ${(err as Error).message}`]);
  }
  return parseConfig(text, file, env);
}
