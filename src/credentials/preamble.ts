/**
 * Connection-string preambles and the JWS shape test (docs/reference/request-pipeline.md, step 3). Clients that were
 * handed keys as `host:port:KEY` keep sending them that way; only the part after the last
 * `:` is the credential. A compact JWS never contains `:`, so stripping is safe for tokens too.
 */

/** Removes everything up to and including the last `:`; returns `value` itself when there is none. */
export function stripPreamble(value: string): string {
  const at = value.lastIndexOf(':');
  return at === -1 ? value : value.slice(at + 1);
}

/** Three non-empty runs of the base64url alphabet (RFC 4648 §5, unpadded) joined by `.`. */
const JWS_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/** A base64url part of `n` characters: a length of 1 mod 4 cannot come from any byte string. */
function decodableLength(n: number): boolean {
  return n % 4 !== 1;
}

/**
 * True when `value` has the shape of a compact JWS: three non-empty unpadded base64url parts
 * separated by `.`, the first decoding to a JSON object (the protected header). This only
 * decides which authenticator gets the credential, so it stays cheap: no signature, and the
 * header is checked to be `{…}` (JSON whitespace allowed around it) rather than parsed, which
 * costs several times more and which the JWT verifier does anyway. Opaque keys that merely
 * contain dots still go to the key authenticator.
 */
export function isCompactJws(value: string): boolean {
  // One native regular-expression scan of the whole value (a loop over its characters in
  // JavaScript cost several microseconds per request).
  if (!JWS_SHAPE.test(value)) return false;
  const d1 = value.indexOf('.');
  const d2 = value.indexOf('.', d1 + 1);
  if (!decodableLength(d1) || !decodableLength(d2 - d1 - 1) || !decodableLength(value.length - d2 - 1)) return false;
  const header = Buffer.from(value.slice(0, d1), 'base64url');
  let from = 0;
  let to = header.length - 1;
  while (from < to && isJsonSpace(header[from]!)) from++;
  while (to > from && isJsonSpace(header[to]!)) to--;
  return to > from && header[from] === 0x7b && header[to] === 0x7d;
}

function isJsonSpace(b: number): boolean {
  return b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d;
}
