import type { GatewayConfig } from '../config/load.js';
import type { Authenticator } from '../authn/types.js';
import type { CompiledRoute } from '../http/match.js';
import { guardOptionsFromConfig, type GuardOptions } from '../http/guard.js';
import { extractOptionsFromConfig, type ExtractOptions } from '../credentials/extract.js';
import type { AssertionSigner } from '../identity/assertion.js';
import { forwardPlan, type ForwardPlan } from '../identity/headers.js';
import { cidrMatcher } from '../util/cidr.js';
import { createUpstreams, type Upstream } from '../proxy/upstreams.js';
import { Tracing } from '../ops/tracing.js';
import { compilePolicy, type CompiledPolicy } from '../limits/policy.js';

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
