import { LONGEST_LIFETIME_MS } from '../config/schema-parts.js';
import { parseCidr } from '../util/cidr.js';
import { invalid } from './errors.js';

export const SUBJECT_MAX = 256;
export const NAME_MAX = 128;
export const CONTROL = /[\u0000-\u001f\u007f]/;

/** A non-empty single-line string of at most `max` characters. */
export function checkText(what: string, v: unknown, max: number): string {
  if (typeof v !== 'string' || v.trim() === '') throw invalid(`${what} must be a non-empty string`);
  if (v.length > max) throw invalid(`${what} is longer than ${max} characters`);
  if (CONTROL.test(v)) throw invalid(`${what} contains control characters`);
  return v;
}

/**
 * What reaches the upstream as a header value: printable ASCII, without a space at either
 * end (an HTTP parser trims those, so `" admin"` would reach the upstream as `admin`, while
 * revocations, limits and logs know it as another subject).
 */
export const HEADER_VALUE = /^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/;

/** {@link checkText} for a value a new key carries to the upstream (its subject) or is found by (its name). */
export function checkIdentityText(what: string, v: unknown, max: number): string {
  const s = checkText(what, v, max);
  if (!HEADER_VALUE.test(s)) throw invalid(`${what} must be printable ASCII without spaces at either end (it reaches the upstream as a header value)`);
  return s;
}

/** A list of distinct non-empty strings, each passing `item` (which names its problem). */
export function checkList(what: string, v: readonly unknown[] | undefined, item: (s: string) => string | undefined): string[] {
  if (v === undefined) return [];
  const out: string[] = [];
  for (const x of v) {
    if (typeof x !== 'string' || x === '') throw invalid(`${what}: entries must be non-empty strings`);
    const problem = item(x);
    if (problem !== undefined) throw invalid(`${what}: ${problem}`);
    if (!out.includes(x)) out.push(x);
  }
  return out;
}

export const scopeProblem = (s: string): string | undefined => (/\s/.test(s) || CONTROL.test(s) ? `"${s}" contains whitespace` : undefined);
export const cidrProblem = (s: string): string | undefined => (parseCidr(s) === undefined ? `"${s}" is not an IP address or CIDR` : undefined);
export const audienceProblem = (s: string): string | undefined => (CONTROL.test(s) ? `"${s}" contains control characters` : undefined);

/** The longest duration a key's times take (the config's bound for lifetimes: 100 years). */
export const LONGEST_MS = LONGEST_LIFETIME_MS;

/** Refuses a duration beyond {@link LONGEST_MS}. */
export function checkLongest(what: string, ms: number): void {
  if (ms > LONGEST_MS) throw invalid(`${what} must be at most 100 years away (36500d)`);
}

/** The expiry `ttl` from `now` (null: never), checked to be a positive duration after `notBefore`. */
export function expiryFrom(ttl: number | null, now: number, notBefore: number | null): number | null {
  if (ttl === null) return null;
  if (!(Number.isFinite(ttl) && ttl > 0)) throw invalid('expiry must be a positive duration');
  checkLongest('the expiry', ttl);
  if (notBefore !== null && now + ttl <= notBefore) throw invalid('the expiry must be later than the not-before time');
  return now + ttl;
}
