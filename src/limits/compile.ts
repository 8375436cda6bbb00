// A leaf module (it imports nothing from src/): identities carry a compiled policy too.

/** What a bucket is counted by (docs/reference/rate-limits.md). */
export type LimitBy = 'credential' | 'subject' | 'ip' | 'route' | 'global';

/** One named policy, compiled once per config. */
export interface CompiledPolicy {
  readonly name: string;
  readonly limit: number;
  readonly windowMs: number;
  readonly by: LimitBy;
  /** `RateLimit-Policy` member for this policy, built once. */
  readonly header: string;
}

export function compilePolicy(p: { name: string; limit: number; window: number; by: LimitBy }): CompiledPolicy {
  return { name: p.name, limit: p.limit, windowMs: p.window, by: p.by, header: `"${p.name}";q=${p.limit};w=${Math.max(1, Math.ceil(p.window / 1000))}` };
}
