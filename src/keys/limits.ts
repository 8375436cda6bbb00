import { formatDuration, parseDuration } from '../config/duration.js';
import type { KeyRateLimit } from '../store/types.js';
import { invalid } from './errors.js';

/** Largest per-key limit and credit count a key may carry. */
export const LIMIT_MAX = 1_000_000_000;
export const USES_MAX = Number.MAX_SAFE_INTEGER;
/** A window from 1 s to 1 day: shorter is noise, longer is a quota (`--uses`). */
export const WINDOW_MIN = 1000;
export const WINDOW_MAX = 86_400_000;

const RATE = /^\s*(\d+)\s*\/\s*(\S+)\s*$/;

/**
 * Parses `--rate-limit N/D` (`100/1m`: 100 requests per sliding minute, D a duration as the
 * config writes them) or `none` (null). Anything else is an `invalid-argument` refusal.
 */
export function parseRateLimit(text: string): KeyRateLimit | null {
  if (text.trim() === 'none') return null;
  const m = RATE.exec(text);
  const window = m === null ? undefined : parseDuration(m[2]!);
  if (m === null || window === undefined) throw invalid(`rate limit "${text}" is not N/D (e.g. 100/1m) or none`);
  return checkRateLimit({ limit: Number(m[1]), window });
}

/** Checks a rate limit's bounds (the admin API takes it as an object). */
export function checkRateLimit(r: { limit: unknown; window: unknown }): KeyRateLimit {
  const { limit, window } = r;
  if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1 || limit > LIMIT_MAX) {
    throw invalid(`rate limit: the count must be a whole number from 1 to ${LIMIT_MAX}`);
  }
  if (typeof window !== 'number' || !Number.isInteger(window) || window < WINDOW_MIN || window > WINDOW_MAX) {
    throw invalid('rate limit: the window must be a duration from 1s to 1d');
  }
  return { limit, window };
}

/** `100/1m`: the form `--rate-limit` takes and `keys list` shows. */
export function formatRateLimit(r: KeyRateLimit): string {
  return `${r.limit}/${formatDuration(r.window)}`;
}

/** Parses `--uses N` (a whole number, zero allowed) or `unlimited` (null). */
export function parseUses(text: string): number | null {
  const t = text.trim();
  if (t === 'unlimited') return null;
  if (!/^\d+$/.test(t)) throw invalid(`uses "${text}" is not a whole number or unlimited`);
  return checkUses(Number(t));
}

export function checkUses(n: unknown): number {
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) throw invalid(`uses must be a whole number from 0 to ${USES_MAX}`);
  return n;
}
