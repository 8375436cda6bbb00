import { formatRateLimit, parseRateLimit, parseUses } from '../keys/limits.js';
import { KeyServiceError, type KeyInfo } from '../keys/service.js';
import type { KeyRateLimit } from '../store/types.js';
import { CommandError } from './io.js';

/** `--rate-limit N/D|none` and `--uses N|none` of `keys create|update`, parsed; left out when not given. */
export function limitOptions(o: { rateLimit?: string; uses?: string }): { rateLimit?: KeyRateLimit | null; uses?: number | null } {
  const parse = <T>(flag: string, v: string | undefined, fn: (s: string) => T): T | undefined => {
    if (v === undefined) return undefined;
    try {
      return fn(v);
    } catch (err) {
      if (err instanceof KeyServiceError) throw new CommandError(`${flag}: ${err.message} (invalid-argument)`);
      throw err;
    }
  };
  const rateLimit = parse('--rate-limit', o.rateLimit, parseRateLimit);
  const uses = parse('--uses', o.uses, parseUses);
  return { ...(rateLimit === undefined ? {} : { rateLimit }), ...(uses === undefined ? {} : { uses }) };
}

/** `rateLimit` (`"100/1m"`, null: none) and `remaining` (null: unlimited) as `--json` prints them. */
export function limitJson(k: KeyInfo): { rateLimit: string | null; remaining: number | null } {
  return { rateLimit: k.rateLimit === null ? null : formatRateLimit(k.rateLimit), remaining: k.remaining };
}

/** The same for text output: `rate limit 100/1m, 42 uses left`, or '' when neither is set. */
export function limitText(k: KeyInfo): string {
  const parts: string[] = [];
  if (k.rateLimit !== null) parts.push(`rate limit ${formatRateLimit(k.rateLimit)}`);
  if (k.remaining !== null) parts.push(`${k.remaining} uses left`);
  return parts.join(', ');
}
