/**
 * Ambiguous-request refusal (docs/reference/request-pipeline.md, step 0). Works on `req.rawHeaders` because Node's
 * `req.headers` has already folded duplicates (dropping a second `Authorization`, joining
 * unknown headers with ", "), which is exactly the information this check needs.
 */
import { headerNamespace } from '../identity/namespace.js';
import { isManagedName } from './header-names.js';

/** The config sections the guard reads (config/schema's `identity`, `apiKeys`, `jwt`). */
export interface GuardConfig {
  readonly identity: {
    readonly headers: { readonly subject: string; readonly role: string; readonly scopes: string; readonly keyId: string; readonly method: string };
    readonly namespace: readonly string[];
    readonly assertion?: { readonly header: string } | undefined;
  };
  readonly apiKeys: { readonly headers: readonly string[] };
  readonly jwt: { readonly maxTokenBytes: number };
}

/** What the guard needs to know; build it once per config with {@link guardOptionsFromConfig}. */
export interface GuardOptions {
  /** Lowercase names of the headers the gateway sets upstream, the assertion header included. */
  identityHeaders: ReadonlySet<string>;
  /** Lowercase header-name prefixes that belong to the gateway, e.g. `['x-auth-']`. */
  identityPrefixes: readonly string[];
  /** Lowercase names of headers that may carry a credential: `authorization` and the key headers. */
  credentialHeaders: ReadonlySet<string>;
  /** Largest accepted credential header value, in bytes. */
  maxCredentialBytes: number;
}

/** docs/reference/request-pipeline.md, step 0: credentials over 8 KiB are refused. */
export const DEFAULT_MAX_CREDENTIAL_BYTES = 8192;

/**
 * Returns why the request is ambiguous (a client-safe 400 `bad-request` detail), or null
 * when it is fine. `rawHeaders` is Node's flat `[name, value, name, value, …]`.
 */
export function checkAmbiguity(rawHeaders: readonly string[], opts: GuardOptions): string | null {
  let hosts = 0;
  let authorizations = 0;
  let contentLengths = 0;
  let transferEncodings = 0;
  let seenCredentials: string[] | undefined;

  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!.toLowerCase();
    switch (name) {
      case 'host':
        if (++hosts > 1) return 'duplicate Host header';
        if (!HOST_SHAPE.test(rawHeaders[i + 1]!)) return 'the Host header is not one host';
        continue;
      case 'content-length':
        if (++contentLengths > 1) return 'duplicate Content-Length header';
        continue;
      case 'connection': {
        const named = nominatedProtected(rawHeaders[i + 1]!, opts);
        if (named !== null) return `Connection names ${named}, a header the gateway reads or sets`;
        continue;
      }
      case 'transfer-encoding':
        // Only a lone, exact `chunked` has one reading; lists, repeats and unknown codings
        // are where front ends and back ends disagree about where the body ends.
        if (++transferEncodings > 1) return 'more than one Transfer-Encoding header';
        if (!isExactlyChunked(rawHeaders[i + 1]!)) return 'unsupported Transfer-Encoding (only "chunked" is accepted)';
        continue;
    }
    if (name === 'authorization') {
      if (++authorizations > 1) return 'duplicate Authorization header';
      if (!AUTHORIZATION_SHAPE.test(rawHeaders[i + 1]!)) return 'the Authorization header must be "<scheme> <credential>" with a single space';
    }
    if (opts.credentialHeaders.has(name)) {
      // Node decodes header values as latin1, so one character is one byte.
      if (rawHeaders[i + 1]!.length > opts.maxCredentialBytes) return `credential header too large (over ${opts.maxCredentialBytes} bytes)`;
      if (seenCredentials === undefined) seenCredentials = [name];
      else if (seenCredentials.includes(name)) return 'duplicate credential header';
      else seenCredentials.push(name);
    }
    if (name.includes('_')) {
      // Servers behind CGI-style header mapping (and some proxies) treat `_` and `-` alike,
      // so this would reach them as one of our identity, credential, forwarding or
      // override headers without having been stripped or checked.
      const dashed = name.replaceAll('_', '-');
      if (isIdentityName(dashed, opts)) return 'header name in the identity namespace written with "_"';
      if (opts.credentialHeaders.has(dashed)) return 'credential header name written with "_"';
      if (isManagedName(dashed)) return `header name written with "_" for ${dashed}, which the gateway reads, removes or sets`;
    }
  }

  if (hosts === 0) return 'missing Host header';
  if (contentLengths > 0 && transferEncodings > 0) return 'both Content-Length and Transfer-Encoding';
  return null;
}

/**
 * One host and an optional port: an IP literal, or dot-separated labels with at most one
 * trailing dot (empty is allowed: a request target without authority). Anything else —
 * `a..b`, `a@b`, `a/b`, spaces — is read as different hosts by different servers, while
 * routes match on the gateway's reading.
 */
const HOST_SHAPE = /^(?:(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?)(?::[0-9]*)?)?$/;

/**
 * `<scheme> SP <value>`: a token, exactly one space, then the value. Another separator
 * (two spaces, a tab) is read differently by different servers — one takes the scheme as
 * unknown and forwards, another strips the whitespace and verifies — so it has no single
 * reading. Node has already trimmed whitespace around the whole value.
 */
const AUTHORIZATION_SHAPE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+ [^ \t]/;

/**
 * Headers a client must not have removed on the way upstream by naming them in
 * `Connection`: they frame the request, carry its credential, or describe it to the
 * upstream, and the gateway reads or sets each of them.
 */
const PROTECTED_FROM_CONNECTION: ReadonlySet<string> = new Set([
  'host', 'content-length', 'transfer-encoding', 'authorization', 'cookie', 'forwarded', 'x-request-id', 'traceparent', 'tracestate',
]);

/** The first protected header a `Connection` value names, or null. */
function nominatedProtected(value: string, opts: GuardOptions): string | null {
  for (const part of value.split(',')) {
    const name = part.trim().toLowerCase();
    if (name === '' || name === 'close' || name === 'keep-alive' || name === 'upgrade') continue;
    if (PROTECTED_FROM_CONNECTION.has(name) || name.startsWith('x-forwarded-') || opts.credentialHeaders.has(name) || isIdentityName(name, opts)) return name;
  }
  return null;
}

/** `chunked`, any case, with only HTTP whitespace (SP, HTAB) around it: `trim()` would also eat \v, \f and NBSP. */
function isExactlyChunked(value: string): boolean {
  let from = 0;
  let to = value.length;
  while (from < to && (value.charCodeAt(from) === 0x20 || value.charCodeAt(from) === 0x09)) from++;
  while (to > from && (value.charCodeAt(to - 1) === 0x20 || value.charCodeAt(to - 1) === 0x09)) to--;
  return to - from === 7 && value.slice(from, to).toLowerCase() === 'chunked';
}

function isIdentityName(name: string, opts: GuardOptions): boolean {
  if (opts.identityHeaders.has(name)) return true;
  for (const prefix of opts.identityPrefixes) if (name.startsWith(prefix)) return true;
  return false;
}

/** Builds the guard's options from a validated config; call once per config load. */
export function guardOptionsFromConfig(config: GuardConfig): GuardOptions {
  const ns = headerNamespace(config.identity, config.apiKeys.headers);
  return {
    identityHeaders: ns.names,
    identityPrefixes: ns.prefixes,
    credentialHeaders: ns.credentialHeaders,
    maxCredentialBytes: Math.max(DEFAULT_MAX_CREDENTIAL_BYTES, config.jwt.maxTokenBytes),
  };
}
