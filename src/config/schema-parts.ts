import { z } from 'zod';
import { parseDuration } from './duration.js';

/** A duration string (`500ms`, `30s`, `15m`, `720h`, `7d`), parsed to milliseconds. */
export const duration = z
  .string()
  .regex(/^\d+(?:\.\d+)?(ms|s|m|h|d)$/, 'expected a duration like 500ms, 30s, 15m or 720h')
  .transform((s) => parseDuration(s)!)
  .refine((ms) => Number.isSafeInteger(ms), 'duration too long')
  .meta({ description: 'Duration: a number followed by ms, s, m, h or d.' });

/**
 * The longest lifetime a key's times take (100 years): far past any real key's life, and
 * well inside what a date can hold (a larger one was stored as no time at all).
 */
export const LONGEST_LIFETIME_MS = 100 * 365 * 86_400_000;

/** A lifetime of keys or tokens: a duration of at most 100 years. */
export const lifetime = duration.refine((ms) => ms <= LONGEST_LIFETIME_MS, 'at most 36500d (100 years)');

/** Longest delay a Node.js timer takes; a longer one is silently armed for 1 ms instead. */
export const MAX_TIMER_MS = 2_147_483_647;

/** A duration the gateway arms a timer with (timeouts, intervals): at most about 24 days. */
export const timer = duration.refine((ms) => ms <= MAX_TIMER_MS, 'at most 24d: a longer timer would fire at once');

export const port = z.number().int().min(0).max(65535);
export const nonEmpty = z.string().min(1);
export const cidr = z
  .string()
  .regex(/^[0-9a-fA-F:.]+(\/\d{1,3})?$/, 'expected an IP address or CIDR like 10.0.0.0/8');
