import { isDeepStrictEqual } from 'node:util';
import type { GatewayConfig } from './config/load.js';
import type { RawConfig } from './config/schema.js';

/**
 * How a change to one top-level config section takes effect:
 * - `reload`: the next reload applies it (a new runtime, new authenticators where needed);
 * - `restart`: what it configures is opened once at start (listeners, store, revocation
 *   backend, logger); a reload that changes it is logged and keeps the running value.
 *   `except` names the keys of such a section that a reload does apply.
 */
export type SectionPolicy = { readonly applies: 'reload' } | { readonly applies: 'restart'; readonly except?: readonly string[] };

const reload = { applies: 'reload' } as const;

/** Every top-level config section and when its changes apply (docs/reference/operations.md, Reload). */
export const CONFIG_SECTIONS = {
  // listen.tls: new certificate files apply to new handshakes (turning TLS on or off does not).
  listen: { applies: 'restart', except: ['tls'] },
  // acceptJwt is read per admin call; the listener, its token and Host list are fixed at start.
  admin: { applies: 'restart', except: ['acceptJwt'] },
  upstreams: reload,
  roles: reload,
  trustedProxies: reload,
  allowPathParams: reload,
  store: { applies: 'restart' },
  // The revocation view is opened once; external revocation keys belong to the JWT authenticator.
  revocation: { applies: 'restart', except: ['externalKeys'] },
  jwt: reload,
  apiKeys: reload,
  identity: reload,
  // Policies compile into each runtime; the limiter's buckets and error mode are fixed at start.
  rateLimits: { applies: 'restart', except: ['policies'] },
  log: { applies: 'restart' },
  tracing: reload,
  shutdown: reload,
  routes: reload,
} as const satisfies Record<keyof RawConfig, SectionPolicy>;

export type ConfigSection = keyof typeof CONFIG_SECTIONS;

/** True when the named sections differ between two configs (deep comparison, not by text). */
export function sectionsChanged(prev: GatewayConfig, next: GatewayConfig, sections: readonly ConfigSection[]): boolean {
  return sections.some((s) => !isDeepStrictEqual(prev[s], next[s]));
}

/**
 * The changes between two configs that a reload does not apply, as `section` or
 * `section.key` paths (e.g. `store.url`), in table order.
 */
export function restartOnlyChanges(prev: GatewayConfig, next: GatewayConfig): string[] {
  const out: string[] = [];
  for (const [name, policy] of Object.entries(CONFIG_SECTIONS) as Array<[ConfigSection, SectionPolicy]>) {
    if (policy.applies === 'reload') continue;
    const a: unknown = prev[name];
    const b: unknown = next[name];
    if (isDeepStrictEqual(a, b)) continue;
    if (!isRecord(a) || !isRecord(b)) {
      out.push(name);
      continue;
    }
    const except = policy.except ?? [];
    for (const key of new Set([...Object.keys(a), ...Object.keys(b)])) {
      if (!except.includes(key) && !isDeepStrictEqual(a[key], b[key])) out.push(`${name}.${key}`);
    }
  }
  return out;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
