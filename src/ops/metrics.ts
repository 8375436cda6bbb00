import { Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { AuthMethod } from '../authn/types.js';
import type { PipelineObserver, RequestRecord } from './record.js';
import { Collected, CounterSeries, HistogramSeries, OutcomeSeries } from './metric-series.js';

/*
 * Per-request updates go into plain numbers held by precomputed series objects; prom-client
 * only sees them when the registry is scraped. prom-client's own `inc`/`observe` re-hash and
 * re-validate the label set on every call, even through a `labels()` child: recording one
 * request that way measured ~2.4 µs, against ~70 ns here.
 */

/** Latency buckets (seconds) for the decision: cached credentials are tens of µs, argon2 tens of ms. */
const AUTH_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
/** Latency buckets (seconds) for upstream and whole-request time. */
const REQUEST_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
/** Latency buckets (seconds) for one revocation round trip. */
const REVOCATION_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

/** Label value for requests refused before a route matched (bad request, no route). */
const NO_ROUTE = '(none)';

/** Everything recorded for one route: its request counters by outcome and its latency histogram. */
class RouteSeries {
  /** Keyed by problem code for refusals, by status for forwarded requests: no string built per request. */
  readonly outcomes = new Map<string | number, OutcomeSeries>();
  readonly latency: HistogramSeries;
  readonly route: string;
  constructor(route: string) {
    this.route = route;
    this.latency = new HistogramSeries({ route }, REQUEST_BUCKETS);
  }
}

export type CacheKind = AuthMethod;

/** An authenticator's own cache counters (the JWT and API-key authenticators' `stats`). */
export type CacheCounters = { readonly hits: number; readonly misses: number } | { readonly cacheHits: number; readonly cacheMisses: number };

interface CacheSource {
  readonly read: () => CacheCounters | undefined;
  /** The counters object read last time and its values then; a new object means a new authenticator. */
  last: CacheCounters | undefined;
  hits: number;
  misses: number;
}

export interface MetricsOptions {
  /** Collect prom-client's default process and Node.js metrics into this registry (default true). */
  defaultMetrics?: boolean;
}

/**
 * Prometheus metrics of one gateway process, in their own registry (never prom-client's
 * global one). Observes every finished request; the authenticators and the revocation
 * check report cache and revocation events through the methods below.
 */
export class Metrics implements PipelineObserver {
  readonly registry: Registry;
  private readonly routes = new Map<string, RouteSeries>();
  /** Series for outcomes that do not fit the fast key (kept for completeness; not expected). */
  private readonly otherOutcomes = new Map<string, OutcomeSeries>();
  private readonly authBy: { jwt: HistogramSeries; apiKey: HistogramSeries; none: HistogramSeries };
  private readonly upstreams = new Map<string, HistogramSeries>();
  private readonly hits: Record<CacheKind, CounterSeries>;
  private readonly misses: Record<CacheKind, CounterSeries>;
  private readonly revocationErrors = new CounterSeries({});
  /** 429s from rate-limit policies, by route and policy. */
  private readonly rateLimited = new Map<string, CounterSeries>();
  private readonly revocationLatency = new HistogramSeries({}, REVOCATION_BUCKETS);
  private queueDepth: (() => number) | undefined;
  private readonly cacheSources: Partial<Record<CacheKind, CacheSource>> = {};

  constructor(opts: MetricsOptions = {}) {
    this.registry = new Registry();
    this.authBy = {
      jwt: new HistogramSeries({ method: 'jwt' }, AUTH_BUCKETS),
      apiKey: new HistogramSeries({ method: 'apiKey' }, AUTH_BUCKETS),
      none: new HistogramSeries({ method: 'none' }, AUTH_BUCKETS),
    };
    this.hits = { jwt: new CounterSeries({ kind: 'jwt' }), apiKey: new CounterSeries({ kind: 'apiKey' }) };
    this.misses = { jwt: new CounterSeries({ kind: 'jwt' }), apiKey: new CounterSeries({ kind: 'apiKey' }) };

    const routes = this.routes;
    const others = this.otherOutcomes;
    new Collected('portcullis_requests_total', 'Requests by route, decision, status and problem code (empty code: forwarded).', 'counter', function* () {
      for (const r of routes.values()) yield* r.outcomes.values();
      yield* others.values();
    }).register(this.registry);
    new Collected('portcullis_request_duration_seconds', 'Time from arrival to the end of the response, by route.', 'histogram', function* () {
      for (const r of routes.values()) yield r.latency;
    }).register(this.registry);
    const auth = this.authBy;
    new Collected('portcullis_auth_duration_seconds', 'Time spent deciding a request (steps 0-6), by the kind of credential that was verified (none: public routes and refused requests).', 'histogram', () => [auth.jwt, auth.apiKey, auth.none]).register(this.registry);
    const ups = this.upstreams;
    new Collected('portcullis_upstream_duration_seconds', 'Time from handing a request to the upstream to the end of its response, by upstream.', 'histogram', () => ups.values()).register(this.registry);
    new Collected('portcullis_cache_hits_total', 'Verified-credential cache hits, by credential kind.', 'counter', () => {
      this.pullCacheSources();
      return [this.hits.jwt, this.hits.apiKey];
    }).register(this.registry);
    new Collected('portcullis_cache_misses_total', 'Verified-credential cache misses, by credential kind.', 'counter', () => {
      this.pullCacheSources();
      return [this.misses.jwt, this.misses.apiKey];
    }).register(this.registry);
    const limited = this.rateLimited;
    new Collected('portcullis_rate_limited_total', 'Requests refused 429 by a rate-limit policy, by route and policy.', 'counter', () => limited.values()).register(this.registry);
    new Collected('portcullis_revocation_errors_total', 'Revocation checks that failed because the revocation backend was unreachable.', 'counter', () => [this.revocationErrors]).register(this.registry);
    new Collected('portcullis_revocation_duration_seconds', 'Time of one revocation round trip to the backend.', 'histogram', () => [this.revocationLatency]).register(this.registry);
    const self = this;
    new Gauge({
      name: 'portcullis_argon2_queue_depth',
      help: 'API key verifications waiting for an argon2 slot.',
      registers: [this.registry],
      collect() {
        this.set(self.queueDepth?.() ?? 0);
      },
    });
    if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }

  /** Content-Type of `text()` (Prometheus text exposition 0.0.4). */
  get contentType(): string {
    return this.registry.contentType;
  }

  onRequest(r: RequestRecord): void {
    const route = r.route ?? NO_ROUTE;
    let rs = this.routes.get(route);
    if (rs === undefined) {
      rs = new RouteSeries(route);
      this.routes.set(route, rs);
    }
    this.outcome(rs, r).n++;
    if (r.ratePolicy !== undefined) {
      const key = `${route}\u0000${r.ratePolicy}`;
      let c = this.rateLimited.get(key);
      if (c === undefined) this.rateLimited.set(key, (c = new CounterSeries({ route, policy: r.ratePolicy })));
      c.n++;
    }
    rs.latency.observe(r.latencyMs / 1000);
    const m = r.method_;
    (m === 'jwt' ? this.authBy.jwt : m === 'apiKey' ? this.authBy.apiKey : this.authBy.none).observe(r.authMs / 1000);
    if (r.upstream !== undefined && r.upstreamMs !== undefined) {
      let u = this.upstreams.get(r.upstream);
      if (u === undefined) {
        u = new HistogramSeries({ upstream: r.upstream }, REQUEST_BUCKETS);
        this.upstreams.set(r.upstream, u);
      }
      u.observe(r.upstreamMs / 1000);
    }
  }

  private outcome(rs: RouteSeries, r: RequestRecord): CounterSeries {
    const key = r.code ?? r.status;
    const s = rs.outcomes.get(key);
    if (s !== undefined && s.status === r.status && s.decision === r.decision) return s;
    if (s === undefined) {
      const fresh = new OutcomeSeries(rs.route, r.decision, r.status, r.code ?? '');
      rs.outcomes.set(key, fresh);
      return fresh;
    }
    // A code seen with another status or decision than before: keep it apart rather than miscount.
    const full = `${rs.route}\0${r.decision}\0${r.status}\0${r.code ?? ''}`;
    let o = this.otherOutcomes.get(full);
    if (o === undefined) {
      o = new OutcomeSeries(rs.route, r.decision, r.status, r.code ?? '');
      this.otherOutcomes.set(full, o);
    }
    return o;
  }

  /** A verified credential was served from the identity cache. */
  cacheHit(kind: CacheKind): void {
    this.hits[kind].n++;
  }

  /** A credential had to be verified (not in the identity cache). */
  cacheMiss(kind: CacheKind): void {
    this.misses[kind].n++;
  }

  /**
   * Read cache hits and misses of `kind` from an authenticator's own counters at scrape time
   * instead of through `cacheHit`/`cacheMiss`. `read` returns the current authenticator's
   * counters object; when a reload replaces the authenticator (a new object), the old one's
   * last increments are still counted and the new one's are added, so the counters never
   * go backwards.
   */
  setCacheSource(kind: CacheKind, read: () => CacheCounters | undefined): void {
    this.cacheSources[kind] = { read, last: undefined, hits: 0, misses: 0 };
  }

  private pullCacheSources(): void {
    for (const kind of ['jwt', 'apiKey'] as const) {
      const src = this.cacheSources[kind];
      if (src === undefined) continue;
      const now = src.read();
      if (src.last !== undefined && now !== src.last) this.addCacheDelta(kind, src, src.last);
      if (now === undefined) {
        src.last = undefined;
        continue;
      }
      if (now !== src.last) {
        src.last = now;
        src.hits = 0;
        src.misses = 0;
      }
      this.addCacheDelta(kind, src, now);
    }
  }

  private addCacheDelta(kind: CacheKind, src: CacheSource, c: CacheCounters): void {
    const hits = 'hits' in c ? c.hits : c.cacheHits;
    const misses = 'misses' in c ? c.misses : c.cacheMisses;
    if (hits > src.hits) this.hits[kind].n += hits - src.hits;
    if (misses > src.misses) this.misses[kind].n += misses - src.misses;
    src.hits = hits;
    src.misses = misses;
  }

  /** The revocation backend could not answer (the request was then denied or allowed per `onError`). */
  revocationError(): void {
    this.revocationErrors.n++;
  }

  /** Duration of one revocation round trip, in milliseconds. */
  observeRevocation(ms: number): void {
    this.revocationLatency.observe(ms / 1000);
  }

  /** Where the argon2 queue depth gauge reads from at scrape time (replaces any previous source). */
  setQueueDepthSource(source: () => number): void {
    this.queueDepth = source;
  }

  /** The exposition text for `/metrics`. */
  text(): Promise<string> {
    return this.registry.metrics();
  }
}
