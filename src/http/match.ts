/** What a route of the config says, as far as matching reads it (config/schema's `routes` entries). */
export interface RouteSpec {
  readonly name?: string | undefined;
  readonly match: { readonly path: string; readonly methods?: readonly string[] | undefined; readonly host?: string | undefined };
  readonly public: boolean;
  readonly minRole?: string | undefined;
  readonly scopes: readonly string[];
  readonly audience?: string | readonly string[] | undefined;
  readonly auth: readonly ('jwt' | 'apiKey')[];
  readonly upstream: string;
}

/** A route with its pattern compiled once at load. */
export interface CompiledRoute {
  readonly index: number;
  readonly label: string;
  readonly pattern: string;
  /** Pattern segments without the trailing `**`. */
  readonly segments: readonly string[];
  /** The same, case-folded (see {@link foldCase}); `segments` itself when nothing folds. */
  readonly folded: readonly string[];
  /** The pattern ends in `**` (zero or more further segments). */
  readonly tail: boolean;
  readonly methods: ReadonlySet<string> | null;
  readonly host: string | null;
  readonly public: boolean;
  readonly minRole: string | undefined;
  /** Rank required; -Infinity when the route sets no minRole (any authenticated identity). */
  readonly minRank: number;
  readonly scopes: readonly string[];
  readonly audiences: readonly string[] | null;
  readonly allowJwt: boolean;
  readonly allowApiKey: boolean;
  readonly upstream: string;
}

export function compileRoutes(routes: readonly RouteSpec[], ranks: ReadonlyMap<string, number>): CompiledRoute[] {
  return routes.map((r, index) => {
    const parts = r.match.path.split('/').slice(1);
    const tail = parts[parts.length - 1] === '**';
    if (tail) parts.pop();
    // A pattern's trailing slash is ignored, as it is for request paths (see splitPath).
    if (parts.length > 0 && parts[parts.length - 1] === '') parts.pop();
    const methods = r.match.methods ? new Set(r.match.methods) : null;
    // GET routes also answer HEAD, as every HTTP server does.
    if (methods?.has('GET')) methods.add('HEAD');
    return {
      index,
      label: r.name ?? `${index}:${r.match.path}`,
      pattern: r.match.path,
      segments: parts,
      folded: foldedSegments(parts),
      tail,
      methods,
      host: r.match.host === undefined ? null : (hostName(r.match.host) ?? null),
      public: r.public,
      minRole: r.minRole,
      minRank: r.minRole === undefined ? -Infinity : (ranks.get(r.minRole) ?? Infinity),
      scopes: r.scopes,
      audiences: r.audience === undefined ? null : typeof r.audience === 'string' ? [r.audience] : r.audience,
      allowJwt: r.auth.includes('jwt'),
      allowApiKey: r.auth.includes('apiKey'),
      upstream: r.upstream,
    };
  });
}

/** A pattern's segments as foldCase reads them; `parts` itself when nothing folds. */
function foldedSegments(parts: string[]): string[] {
  const path = `/${parts.join('/')}`;
  const folded = foldCase(path);
  return folded === path ? parts : splitPath(folded);
}

/**
 * Segments of a normalized path. A trailing slash does not make a different path for
 * matching: `/admin/` is matched as `/admin`, so a rule on one always covers the other.
 */
export function splitPath(path: string): string[] {
  const end = path.length > 1 && path.endsWith('/') ? path.length - 1 : path.length;
  return end <= 1 ? [] : path.slice(1, end).split('/');
}

/**
 * Host as routes compare it: lower-cased, without the port and without the trailing dot of
 * a fully qualified name (`Admin.Example.com.:8080` is `admin.example.com`), which DNS and
 * the upstream take as the same host. `undefined` stays undefined.
 */
export function hostName(host: string | undefined): string | undefined {
  if (host === undefined) return undefined;
  let h = host.startsWith('[') ? host.slice(0, host.indexOf(']') + 1) : host.split(':', 1)[0]!;
  if (h.endsWith('.')) h = h.slice(0, -1);
  return h.toLowerCase();
}

function hostMatches(pattern: string, host: string | undefined): boolean {
  if (host === undefined) return false;
  if (pattern.startsWith('*.')) return host.endsWith(pattern.slice(1)) && host.length > pattern.length - 1;
  return host === pattern;
}

function pathMatches(route: CompiledRoute, segs: readonly string[], folded: boolean): boolean {
  const p = folded ? route.folded : route.segments;
  if (route.tail ? segs.length < p.length : segs.length !== p.length) return false;
  for (let i = 0; i < p.length; i++) {
    const want = p[i]!;
    if (want === '*') {
      if (segs[i] === '') return false;
    } else if (want !== segs[i]) return false;
  }
  return true;
}

/** First route, in file order, whose method, host and path match. */
export function matchRoute(
  routes: readonly CompiledRoute[],
  method: string,
  host: string | undefined,
  segs: readonly string[],
  folded = false,
): CompiledRoute | undefined {
  for (const r of routes) {
    if (r.methods !== null && !r.methods.has(method)) continue;
    if (r.host !== null && !hostMatches(r.host, host)) continue;
    if (pathMatches(r, segs, folded)) return r;
  }
  return undefined;
}

/**
 * Encoded letters outside ASCII whose simple case mapping is an ASCII letter: Java's
 * `equalsIgnoreCase` (and culture-aware compares elsewhere) take `admın` (dotless ı) for
 * `ADMIN`.
 */
const FOLDS_TO_ASCII: ReadonlyArray<[string, string]> = [['%C4%B0', 'i'], ['%C4%B1', 'i'], ['%C5%BF', 's'], ['%E2%84%AA', 'k']];

/**
 * A normalized path or pattern as a lenient server reads it: without regard to case, and
 * each segment as servers that trim it do — without trailing dots and spaces (IIS, whose
 * Windows file names drop them; Spring's `AntPathMatcher` with `trimTokens`), without
 * leading spaces (the same trimming), and without `;` parameters (Tomcat, Jetty), so
 * `/admin./x`, `/admin%20/x`, `/%20admin/x` and `/admin;p/x` all read as `/admin/x`.
 * A segment that trims to nothing is dropped. Linear in the path's length, whatever it
 * holds.
 */
export function foldCase(path: string): string {
  let p = path;
  if (p.includes('%')) for (const [from, to] of FOLDS_TO_ASCII) p = p.replaceAll(from, to);
  p = p.toLowerCase();
  if (!TRIMMABLE.test(p)) return p;
  // A segment trimmed to nothing is no segment (Spring splits ignoring empty tokens).
  let out = '';
  for (const seg of p.split('/')) {
    const t = trimSegment(seg);
    if (t !== '') out += `/${t}`;
  }
  return out === '' ? '/' : out;
}

/**
 * True when a segment of a normalized path is nothing but dots and spaces with at least one
 * dot (`...`, `..%20`, `.%20`): Windows drops a segment's trailing dots and spaces, so IIS
 * may read it as `.` or `..` — a dot segment the gateway did not resolve. Linear.
 */
export function hasDotLikeSegment(path: string): boolean {
  if (!path.includes('..') && !path.includes('.%20') && !path.includes('%20.')) return false;
  for (const seg of path.split('/')) {
    if (seg === '' || !seg.includes('.')) continue;
    let i = 0;
    while (i < seg.length && (seg.charCodeAt(i) === 0x2e || seg.startsWith('%20', i))) i += seg.charCodeAt(i) === 0x2e ? 1 : 3;
    if (i === seg.length) return true;
  }
  return false;
}

/** Something a segment trim would remove (on a lower-cased path). */
const TRIMMABLE = /\.(?:\/|$)|%20|;|%3b/;

function trimSegment(seg: string): string {
  let end = seg.length;
  const semi = seg.indexOf(';');
  if (semi !== -1) end = semi;
  const encoded = seg.indexOf('%3b');
  if (encoded !== -1 && encoded < end) end = encoded;
  let start = 0;
  while (start + 3 <= end && seg.startsWith('%20', start)) start += 3;
  for (;;) {
    if (end > start && seg.charCodeAt(end - 1) === 0x2e) end--;
    else if (end - 3 >= start && seg.startsWith('%20', end - 3)) end -= 3;
    else break;
  }
  return start === 0 && end === seg.length ? seg : seg.slice(start, end);
}

const FOLDABLE = /[A-Z]|%C4%B[01]|%C5%BF|%E2%84%AA|\.(?:\/|$)|%20|;|%3[Bb]/;

/**
 * The route for a normalized path, or `'case'` when its letter case (or what segment
 * trimming removes, see {@link foldCase}) decides which route that is. Routes compare paths
 * exactly, but many upstreams route without regard to case (Express and ASP.NET by default,
 * IIS), and some trim segments: `/ADMIN/users` or `/admin./users` would
 * miss a rule on `/admin/**`, match a looser one, and be served by the very handler that
 * rule protects. When the folded path matches another route than the path as sent, neither
 * reading can be trusted.
 */
export function matchPath(routes: readonly CompiledRoute[], method: string, host: string | undefined, path: string): CompiledRoute | undefined | 'case' {
  const exact = matchRoute(routes, method, host, splitPath(path));
  if (!FOLDABLE.test(path) && !routes.some((r) => r.folded !== r.segments)) return exact;
  return matchRoute(routes, method, host, splitPath(foldCase(path)), true) === exact ? exact : 'case';
}

function covers(a: CompiledRoute, b: CompiledRoute): boolean {
  if (a.methods !== null && (b.methods === null || [...b.methods].some((m) => !a.methods!.has(m)))) return false;
  if (a.host !== null && (b.host === null || !(b.host === a.host || (a.host.startsWith('*.') && hostMatches(a.host, b.host.replace(/^\*\./, 'x.')))))) return false;
  if (a.tail) {
    if (b.segments.length < a.segments.length) return false;
  } else if (b.tail || b.segments.length !== a.segments.length) return false;
  for (let i = 0; i < a.segments.length; i++) {
    const x = a.segments[i]!;
    const y = b.segments[i]!;
    if (x !== '*' && x !== y) return false;
  }
  return true;
}

/** Routes that an earlier route always wins over: they can never match. */
export function findShadowedRoutes(routes: readonly CompiledRoute[]): Array<{ index: number; by: number }> {
  const out: Array<{ index: number; by: number }> = [];
  for (let j = 0; j < routes.length; j++) {
    for (let i = 0; i < j; i++) {
      if (covers(routes[i]!, routes[j]!)) {
        out.push({ index: j, by: i });
        break;
      }
    }
  }
  return out;
}
