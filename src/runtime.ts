import { isDeepStrictEqual } from 'node:util';
import type { GatewayConfig } from './config/load.js';
import type { RawConfig } from './config/schema.js';
import type { Authenticator } from './authn/types.js';
import type { CompiledRoute } from './http/match.js';
import { guardOptionsFromConfig, type GuardOptions } from './http/guard.js';
import { extractOptionsFromConfig, type ExtractOptions } from './credentials/extract.js';
import type { AssertionSigner } from './identity/assertion.js';
import { forwardPlan, type ForwardPlan } from './identity/headers.js';
import { cidrMatcher } from './util/cidr.js';
import { createUpstreams, type Upstream } from './proxy/upstreams.js';
import { openTracing, Tracing } from './ops/tracing.js';
import { compilePolicy, type CompiledPolicy } from './limits/policy.js';

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
  // The number of worker processes is the primary's, fixed when it forks them.
  workers: { applies: 'restart' },
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

/** The sections (and keys) of a config that only a restart applies, as plain data. */
export type RunningSections = Partial<Record<ConfigSection, unknown>>;

/** What of `config` only a restart changes: the restart-only sections, as plain data (JSON-safe). */
export function runningSections(config: GatewayConfig): RunningSections {
  const out: RunningSections = {};
  for (const [name, policy] of Object.entries(CONFIG_SECTIONS) as Array<[ConfigSection, SectionPolicy]>) {
    if (policy.applies === 'restart') out[name] = config[name];
  }
  return out;
}

/**
 * `next` as a process that started on `running` serves it after a reload: the restart-only
 * sections (but their reloadable keys) are `running`'s, everything else `next`'s. A worker
 * of `serve --workers` that starts after its primary reloaded starts on this, so it opens
 * the store, revocation backend, limiter and listener the instance runs on.
 */
export function asRunning(next: GatewayConfig, running: RunningSections): GatewayConfig {
  const out: Record<string, unknown> = { ...next };
  for (const [name, policy] of Object.entries(CONFIG_SECTIONS) as Array<[ConfigSection, SectionPolicy]>) {
    if (policy.applies === 'reload' || !(name in running)) continue;
    const kept = running[name];
    const fresh: unknown = next[name];
    if (!isRecord(kept) || !isRecord(fresh) || policy.except === undefined) {
      out[name] = kept;
      continue;
    }
    const merged: Record<string, unknown> = { ...kept };
    for (const key of policy.except) {
      if (key in fresh) merged[key] = fresh[key];
      else delete merged[key];
    }
    out[name] = Object.freeze(merged);
  }
  return Object.freeze(out) as unknown as GatewayConfig;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Everything the per-request path needs, derived once from one config. A reload builds a
 * new Runtime and swaps it in; a request keeps the Runtime it started with.
 */
export interface Runtime {
  readonly config: GatewayConfig;
  readonly routes: readonly CompiledRoute[];
  readonly upstreams: ReadonlyMap<string, Upstream>;
  /** Upstream of each route, by route index (no lookups by name per request). */
  readonly routeUpstreams: readonly Upstream[];
  readonly guard: GuardOptions;
  readonly extract: ExtractOptions;
  readonly forward: ForwardPlan;
  readonly isTrustedProxy: (ip: string) => boolean;
  readonly jwt: Authenticator | undefined;
  readonly apiKey: Authenticator | undefined;
  /** Signs the identity assertion for the upstream, when `identity.assertion` is set. */
  readonly assertion: { readonly header: string; readonly signer: AssertionSigner } | undefined;
  /** Milliseconds a 429 `rate-limited` (failed-attempt limits) is held before it is sent. */
  readonly rateLimitedDelay: number;
  /** Trace Context and span export; one instance lives across reloads that keep `tracing`. */
  readonly tracing: Tracing;
  /** Rate-limit policies of each route, by route index. */
  readonly routeLimits: ReadonlyArray<readonly CompiledPolicy[]>;
}

export interface Authenticators {
  jwt?: Authenticator | undefined;
  apiKey?: Authenticator | undefined;
  assertion?: AssertionSigner | undefined;
}

/** Without `tracing`, traces are handed on and no span is exported (commands that never serve). */
export function buildRuntime(config: GatewayConfig, authn: Authenticators, upstreams?: Map<string, Upstream>, tracing?: Tracing): Runtime {
  const ups = upstreams ?? createUpstreams(config.upstreams, config.tlsFiles.upstreams);
  const forward = forwardPlan(config.identity, config.apiKeys.headers);
  return {
    config,
    routes: config.compiledRoutes,
    upstreams: ups,
    routeUpstreams: config.compiledRoutes.map((r) => ups.get(r.upstream)!),
    guard: guardOptionsFromConfig(config),
    extract: extractOptionsFromConfig(config),
    forward,
    isTrustedProxy: cidrMatcher(config.trustedProxies),
    jwt: authn.jwt,
    apiKey: authn.apiKey,
    assertion: config.identity.assertion && authn.assertion ? { header: config.identity.assertion.header, signer: authn.assertion } : undefined,
    rateLimitedDelay: config.apiKeys.failedAttempts.delay,
    tracing: tracing ?? new Tracing(config.tracing),
    routeLimits: routeLimits(config),
  };
}

function routeLimits(config: GatewayConfig): CompiledPolicy[][] {
  const byName = new Map(config.rateLimits.policies.map((p) => [p.name, compilePolicy(p)]));
  return config.routes.map((r) => r.rateLimit.map((name) => byName.get(name)!));
}

/**
 * The runtime a reload swaps in: `config` compiled with `authn`, on the previous runtime's
 * tracer when `tracing` did not change (a new one otherwise; none before, a first one).
 */
export async function nextRuntime(config: GatewayConfig, authn: Authenticators, prev?: Runtime): Promise<Runtime> {
  const keep = prev !== undefined && !sectionsChanged(prev.config, config, ['tracing']);
  return buildRuntime(config, authn, undefined, keep ? prev.tracing : await openTracing(config.tracing));
}
