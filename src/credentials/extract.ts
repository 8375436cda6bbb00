/**
 * Credential extraction (docs/reference/request-pipeline.md, step 3): finds the one credential a request carries in the
 * Authorization header, a configured key header or a configured query parameter. Pure and
 * allocation-light; it runs on every protected request.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Credential } from '../authn/types.js';
import type { RawConfig } from '../config/schema.js';
import { DEFAULT_MAX_CREDENTIAL_BYTES } from '../http/guard.js';
import { GatewayError } from '../http/problem.js';
import { decodeName, foldName, formDecode, readings } from '../http/query-names.js';
import { isCompactJws, stripPreamble } from './preamble.js';

/** Where credentials may be; build once per config (see `extractOptionsFromConfig`). */
export interface ExtractOptions {
  /** Authorization schemes that carry a credential, compared case-insensitively (`Bearer`, `ApiKey`). */
  schemes: readonly string[];
  /** Lowercase names of headers that carry a key. */
  headers: readonly string[];
  /** Query parameters that carry a key; removed from the forwarded query. */
  queryParams: readonly string[];
  /** Largest accepted credential, in bytes, before the preamble is stripped. */
  maxBytes: number;
}

/** Builds extraction options from a validated config; call once per config load. */
export function extractOptionsFromConfig(config: Pick<RawConfig, 'apiKeys' | 'jwt'>): ExtractOptions {
  return {
    schemes: [...config.apiKeys.schemes],
    headers: config.apiKeys.headers.map((n) => n.toLowerCase()),
    queryParams: [...config.apiKeys.queryParams],
    maxBytes: Math.max(DEFAULT_MAX_CREDENTIAL_BYTES, config.jwt.maxTokenBytes),
  };
}

export interface Extracted {
  /** The credential, preamble stripped, or null when the request carries none. */
  credential: Credential | null;
  /** The query with credential parameters removed; the same string when nothing was removed. */
  query: string;
}

/**
 * Finds the request's credential. Throws `bad-request` when two different credentials are
 * present, when an Authorization header of a configured scheme is malformed, or when a
 * credential is too large; `key-invalid` when nothing is left after the preamble.
 * Details never contain the credential.
 */
export function extractCredential(headers: IncomingHttpHeaders, query: string, opts: ExtractOptions): Extracted {
  let found: Found | null = null;

  const auth = headers.authorization;
  if (auth !== undefined && opts.schemes.length > 0) {
    const value = fromAuthorization(auth, opts.schemes);
    if (value !== null) found = offer(found, value, value.length, 'authorization', opts.maxBytes);
  }

  for (let i = 0; i < opts.headers.length; i++) {
    const name = opts.headers[i]!;
    let raw = headers[name];
    if (raw === undefined) continue;
    if (typeof raw !== 'string') {
      // Only reachable when the ambiguity guard did not run (e.g. `explain`).
      if (raw.length > 1) throw new GatewayError('bad-request', `The ${name} header appears more than once.`);
      raw = raw[0];
      if (raw === undefined) continue;
    }
    const value = raw.trim();
    // Header values arrive latin1-decoded: one character per byte.
    if (value !== '') found = offer(found, value, value.length, name, opts.maxBytes);
  }

  let outQuery = query;
  if (opts.queryParams.length > 0 && query.length > 1) {
    const q = fromQuery(query, opts, found);
    found = q.found;
    outQuery = q.query;
  }

  if (found === null) return { credential: null, query: outQuery };
  return {
    credential: { kind: isCompactJws(found.value) ? 'jwt' : 'apiKey', value: found.value, source: found.source },
    query: outQuery,
  };
}

interface Found {
  value: string;
  source: string;
}

function offer(found: Found | null, raw: string, bytes: number, source: string, maxBytes: number): Found {
  if (bytes > maxBytes) throw new GatewayError('bad-request', `The credential is too large (over ${maxBytes} bytes).`);
  const value = stripPreamble(raw);
  if (value === '') throw new GatewayError('key-invalid', 'The credential is empty after its connection-string prefix.');
  if (found === null) return { value, source };
  // The same credential repeated (say, header and query) is harmless; two different ones
  // would let the gateway verify one while the upstream acts on the other.
  if (found.value !== value) throw new GatewayError('bad-request', 'The request carries more than one credential.');
  return found;
}

/** The credential of a configured scheme, null for any other scheme (e.g. Basic). */
function fromAuthorization(auth: string, schemes: readonly string[]): string | null {
  const sp = auth.indexOf(' ');
  const schemeLen = sp === -1 ? auth.length : sp;
  if (!isConfiguredScheme(auth, schemeLen, schemes)) return null;
  const value = sp === -1 ? '' : auth.slice(sp + 1).trim();
  if (value === '' || value.includes(' ') || value.includes('\t')) {
    throw new GatewayError('bad-request', 'The Authorization header must be "<scheme> <credential>".');
  }
  return value;
}

function isConfiguredScheme(auth: string, len: number, schemes: readonly string[]): boolean {
  outer: for (let s = 0; s < schemes.length; s++) {
    const scheme = schemes[s]!;
    if (scheme.length !== len) continue;
    for (let i = 0; i < len; i++) {
      const a = auth.charCodeAt(i);
      const b = scheme.charCodeAt(i);
      // ASCII case folding: schemes are tokens, so folding only letters is enough.
      if (a !== b && ((a | 0x20) !== (b | 0x20) || (a | 0x20) < 0x61 || (a | 0x20) > 0x7a)) continue outer;
    }
    return true;
  }
  return false;
}

/**
 * Reads the configured parameters out of the query (`?a=1&key=…`), decoding names and values
 * as application/x-www-form-urlencoded like the upstream would, and rebuilds the query without
 * them. Every occurrence is removed, empty ones included, so a key never travels upstream.
 * Another spelling of a configured name that a lenient upstream would read as it
 * (`API_KEY`, `api.key`, `api_key[]`, `x=1;api_key=…`: see http/query-names) is refused
 * (`bad-request`): it would carry a key the gateway did not verify.
 */
function fromQuery(query: string, opts: ExtractOptions, found: Found | null): { found: Found | null; query: string } {
  let kept: string | null = null; // null until the first removal: then the pairs to keep
  let folded: string[] | undefined;
  let start = 1;
  const len = query.length;
  // The next '=' at or after `start`, found once and reused until passed: every search
  // moves forward, so a query of many pairs without '=' is read in linear time.
  let nextEq = query.indexOf('=', 1);
  while (start <= len) {
    let end = query.indexOf('&', start);
    if (end === -1) end = len;
    if (nextEq !== -1 && nextEq < start) nextEq = query.indexOf('=', start);
    const eq = nextEq === -1 || nextEq > end ? end : nextEq;
    const name = formDecode(query.slice(start, eq));
    if (name !== null && opts.queryParams.includes(name)) {
      // Every pair before the first removal is kept, so they are one slice.
      if (kept === null) kept = query.slice(1, Math.max(1, start - 1));
      if (eq < end) {
        const value = formDecode(query.slice(eq + 1, end));
        if (value === null) throw new GatewayError('bad-request', `Invalid percent-encoding in the ${name} query parameter.`);
        if (value !== '') found = offer(found, value, Buffer.byteLength(value), 'query:' + name, opts.maxBytes);
      }
    } else {
      folded ??= opts.queryParams.map(foldName);
      const spelled = otherSpelling(query.slice(start, end), folded);
      if (spelled !== undefined) {
        throw new GatewayError('bad-request', `A query parameter is another spelling of the key parameter ${opts.queryParams[spelled]}, which some servers read as it; send the key as ${opts.queryParams[spelled]} or in a header.`);
      }
      if (kept !== null) kept = kept === '' ? query.slice(start, end) : kept + '&' + query.slice(start, end);
    }
    start = end + 1;
  }
  if (kept === null) return { found, query };
  return { found, query: kept === '' ? '' : '?' + kept };
}

/** The index of the configured name that a pair (or a `;`-separated part of it) folds to, if any. */
function otherSpelling(pair: string, folded: readonly string[]): number | undefined {
  let from = 0;
  while (from <= pair.length) {
    let end = pair.indexOf(';', from);
    if (end === -1) end = pair.length;
    const part = pair.slice(from, end);
    const eq = part.indexOf('=');
    const raw = eq === -1 ? part : part.slice(0, eq);
    for (const name of readings(decodeName(raw))) {
      const i = folded.indexOf(name);
      if (i !== -1) return i;
    }
    from = end + 1;
  }
  return undefined;
}
