/**
 * Query parameter names as the most lenient servers read them. A gateway that removes or
 * refuses a parameter by its exact name leaves every other spelling to the upstream, and
 * upstreams differ: ASP.NET Core compares names without regard to case; PHP stops a name at
 * a NUL byte, drops leading spaces, reads `.`, ` ` and an unmatched `[` as `_`, and
 * `a[…]…` as the array `a`; Express's qs reads `a[…` as `a`; Rack 2 drops leading brackets
 * and reads up to the next one (`[a]`, `]a`, `a]` are `a`), and like Perl's CGI and Python
 * before 3.9.2 also splits pairs on `;`. The readings of a name are what any of them could
 * take it for.
 */

/** The names (one to three, lower-cased) that lenient servers may read `name` as. */
export function readings(name: string): string[] {
  let s = name;
  const nul = s.indexOf('\0');
  if (nul !== -1) s = s.slice(0, nul);
  s = s.trimStart().toLowerCase();
  const open = s.indexOf('[');
  // PHP: an array when a `]` follows the first `[`; otherwise that `[` reads as `_`.
  const php = (open > 0 && s.indexOf(']', open) !== -1 ? s.slice(0, open) : s).replace(/[ .[]/g, '_');
  // qs: the part before the first `[`.
  const qs = open > 0 ? s.slice(0, open) : php;
  // Rack 2: leading brackets dropped, then up to the next bracket.
  const rack = /^[[\]]*([^[\]]*)/.exec(s)![1]!;
  const out = [php];
  if (qs !== php) out.push(qs);
  if (rack !== php && rack !== qs) out.push(rack);
  return out;
}

/** `name` as PHP reads it: the reading configured names are compared in. */
export function foldName(name: string): string {
  return readings(name)[0]!;
}

/**
 * Every reading of every name of a query's pairs (with or without its leading `?`), split on
 * `&` and on `;`, names decoded by {@link decodeName}.
 */
export function foldedNames(query: string): string[] {
  const out: string[] = [];
  const from = query.startsWith('?') ? 1 : 0;
  for (const pair of query.slice(from).split(/[&;]/)) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const name = eq === -1 ? pair : pair.slice(0, eq);
    out.push(...readings(decodeName(name)));
  }
  return out;
}

/**
 * A parameter name decoded as its most lenient reader would: strictly when it can be
 * (see {@link formDecode}), otherwise as PHP does — `+` and every valid `%XX` decoded, one
 * byte each, the rest kept — so `api_key%00%ZZ` still reads as `api_key`.
 */
export function decodeName(s: string): string {
  return formDecode(s) ?? s.replaceAll('+', ' ').replace(/%([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)));
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
