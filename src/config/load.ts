import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, visit, type Document, type Node } from 'yaml';
import { configSchema, type RawConfig } from './schema.js';
import { interpolate } from './interpolate.js';
import { crossFieldRules } from './rules.js';
import { compileRoutes, type CompiledRoute, findShadowedRoutes } from '../http/match.js';
import { readTlsFiles, type ReadPem, type TlsFiles } from '../net/tls.js';

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
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(problems.join('\n'));
    this.problems = problems;
  }
}

export interface LoadResult {
  config: GatewayConfig;
  /** Non-fatal findings (`FILE:LINE:COL warning: …`), e.g. shadowed routes. */
  warnings: string[];
  /** The text it was parsed from (what `serve --workers` hands its workers). */
  text: string;
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
  private readonly doc: Document;
  private readonly lines: LineCounter;
  private readonly file: string;
  constructor(doc: Document, lines: LineCounter, file: string) {
    this.doc = doc;
    this.lines = lines;
    this.file = file;
  }

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

/** The schema's verdict on interpolated YAML: the typed config, or ConfigError with every issue located. */
function validate(raw: unknown, where: Locator): RawConfig {
  const parsed = configSchema.safeParse(raw);
  if (parsed.success) return parsed.data;
  const problems: string[] = [];
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

/** Parses and validates config text; throws ConfigError with every problem found. `readPem` reads the TLS files it names (the disk by default). */
export function parseConfig(text: string, file: string, env: Readonly<Record<string, string | undefined>> = process.env, readPem?: ReadPem): LoadResult {
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

  const cfg = validate(raw, where);

  // Cross-field rules the schema cannot state.
  const roleRanks = crossFieldRules(cfg, (path) => where.at(path), problems);
  const tlsFiles = readTlsFiles(cfg, dirname(file), (path, message) => problems.push(`${where.at(path)} ${path.join('.')}: ${message}`), readPem);
  if (problems.length) throw new ConfigError(problems);

  const compiledRoutes = compileRoutes(cfg.routes, roleRanks);
  const warnings: string[] = [];
  for (const s of findShadowedRoutes(compiledRoutes)) {
    warnings.push(`${where.at(['routes', s.index, 'match'])} warning: route ${s.index} (${cfg.routes[s.index]!.match.path}) can never match: route ${s.by} (${cfg.routes[s.by]!.match.path}) before it matches everything it would`);
  }
  const config: GatewayConfig = deepFreeze({ ...cfg, file, compiledRoutes, roleRanks, tlsFiles });
  return { config, warnings, text };
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
