import { configSchema, type ApiKeysConfig } from '../../src/config/schema.js';
import type { Clock } from '../../src/clock.js';

/** The config defaults for `apiKeys`, with overrides. */
export function apiKeysConfig(over: Partial<ApiKeysConfig> = {}): ApiKeysConfig {
  const base = configSchema.parse({ upstreams: { api: { url: 'http://127.0.0.1:1' } }, routes: [{ match: { path: '/**' }, upstream: 'api' }] }).apiKeys;
  return { ...base, ...over };
}

/** Cheap argon2id parameters for tests that hash many secrets (the library's minimum memory). */
export const FAST_HASH = { memoryCost: 1024, timeCost: 2, parallelism: 1 } as const;

/** A clock tests move by hand. */
export class TestClock implements Clock {
  public t: number;
  constructor(t = Date.UTC(2031, 5, 1, 8, 0, 0)) {
    this.t = t;
  }
  now(): number {
    return this.t;
  }
  advance(ms: number): void {
    this.t += ms;
  }
}
