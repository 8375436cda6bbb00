/**
 * Query parameter names as the most lenient servers read them. A gateway that removes or
 * refuses a parameter by its exact name leaves every other spelling to the upstream, and
 * upstreams differ: ASP.NET Core compares names without regard to case; PHP drops leading
 * spaces, reads `.`, ` ` and `[` as `_` and `a[]` / `a[x]` as the array `a`; Rack 2, Perl's
 * CGI and Python before 3.9.2 also split pairs on `;`. Folding a name the way all of them
 * together would read it lets the gateway see what any of them could.
 */

/** `name` as a lenient server would read it (see the module comment). */
export function foldName(name: string): string {
  let s = name.trimStart().toLowerCase();
  const bracket = s.indexOf('[');
  if (bracket > 0 && s.endsWith(']')) s = s.slice(0, bracket);
  return s.replace(/[ .[]/g, '_');
}

/**
 * The folded names of a query's pairs (with or without its leading `?`), split on `&` and
 * on `;`, names percent- and `+`-decoded (a name that is not valid percent-encoding is
 * folded as it stands).
 */
export function foldedNames(query: string): string[] {
  const out: string[] = [];
  const from = query.startsWith('?') ? 1 : 0;
  for (const pair of query.slice(from).split(/[&;]/)) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const name = eq === -1 ? pair : pair.slice(0, eq);
    out.push(foldName(formDecode(name) ?? name));
  }
  return out;
}

/** A query component decoded as application/x-www-form-urlencoded; null when its percent-encoding is invalid. */
export function formDecode(s: string): string | null {
  if (!s.includes('%') && !s.includes('+')) return s;
  try {
    return decodeURIComponent(s.replaceAll('+', ' '));
  } catch {
    return null;
  }
}

/**
 * True when the query carries a method override (`_method`, in any spelling): Symfony and
 * Laravel (with parameter overrides on) and Express's method-override read it from the query,
 * and would run another method than the one the gateway chose the route for.
 */
export function hasMethodOverride(query: string): boolean {
  // Cheap first: every spelling has "method" in it, raw or percent-encoded.
  if (!/method|%/i.test(query)) return false;
  return foldedNames(query).includes('_method');
}
