import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { randomFillSync } from 'node:crypto';
import type { TracingConfig } from '../config/schema.js';
import type { TraceHeaders } from '../identity/headers.js';

/** What a finished request tells its spans; a subset of the pipeline's request record. */
export interface TraceOutcome {
  readonly method: string;
  readonly path: string | undefined;
  readonly route: string | undefined;
  readonly decision: string;
  readonly code: string | undefined;
  readonly status: number;
  readonly keyId: string | undefined;
  readonly upstream: string | undefined;
}

export type { TraceHeaders };

export interface SpanIds {
  readonly traceId: string;
  readonly spanId: string;
  readonly sampled: boolean;
}

/** A caller's trace, as its valid `traceparent` and `tracestate` named it. */
export interface ParentContext extends SpanIds {
  readonly tracestate: string | undefined;
}

/** Spans recorded for one request (the OpenTelemetry SDK, see otel.ts). */
export interface SpanPair {
  readonly server: SpanIds;
  client(method: string, upstream: string): SpanIds;
  end(r: TraceOutcome): void;
}

export interface SpanRecorder {
  begin(parent: ParentContext | undefined, method: string, startTime: number): SpanPair;
  shutdown(waitMs: number): Promise<void>;
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;
const ZERO_TRACE = '0'.repeat(32);
const ZERO_SPAN = '0'.repeat(16);

/**
 * W3C Trace Context §3.2: lowercase hex, version `ff` invalid, version `00` exactly four
 * fields, later versions may add fields after a `-`; all-zero ids are invalid. Repeated
 * headers arrive joined by ", " and so fail here too: a new trace.
 */
export function parseTraceparent(v: string | string[] | undefined): SpanIds | undefined {
  if (typeof v !== 'string') return undefined;
  const m = TRACEPARENT.exec(v);
  if (m === null || m[1] === 'ff' || (m[1] === '00' && m[5] !== undefined)) return undefined;
  if (m[2] === ZERO_TRACE || m[3] === ZERO_SPAN) return undefined;
  return { traceId: m[2]!, spanId: m[3]!, sampled: (parseInt(m[4]!, 16) & 1) === 1 };
}

const MEMBER = /^(?:[a-z0-9][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/;

/** A `tracestate` passed on as it came when every member is well-formed (at most 32), else none. */
export function parseTracestate(v: string | string[] | undefined): string | undefined {
  if (v === undefined) return undefined;
  const members = (Array.isArray(v) ? v.join(',') : v).split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (members.length === 0 || members.length > 32) return undefined;
  for (const m of members) if (!MEMBER.test(m)) return undefined;
  return members.join(',');
}

function traceparent(ids: SpanIds): string {
  return `00-${ids.traceId}-${ids.spanId}-${ids.sampled ? '01' : '00'}`;
}

/**
 * The gateway's part in one request's trace. Without span export it only hands the trace
 * on, under a span id of its own and the caller's sampling decision; with export the
 * upstream's parent is the recorded client span.
 */
export class RequestTrace {
  private readonly own: SpanIds;
  private readonly tracestate: string | undefined;
  private readonly spans: SpanPair | undefined;
  constructor(
    own: SpanIds,
    tracestate: string | undefined,
    spans: SpanPair | undefined,
  ) {
    this.own = own;
    this.tracestate = tracestate;
    this.spans = spans;
  }

  get traceId(): string {
    return this.own.traceId;
  }

  /** The headers the upstream gets; with spans recorded, starts the client span they name. */
  upstream(method: string, upstream: string): TraceHeaders {
    const ids = this.spans === undefined ? this.own : this.spans.client(method, upstream);
    return { traceparent: traceparent(ids), tracestate: this.tracestate };
  }

  end(r: TraceOutcome): void {
    this.spans?.end(r);
  }
}

/**
 * W3C Trace Context for every request (docs/reference/operations.md, Tracing); with `tracing.otlp`, a recorder that
 * exports spans beside the requests: a collector that is down or hangs costs dropped spans,
 * never a request's time.
 */
export class Tracing {
  /** Random bytes for ids, refilled when used up: one randomBytes call per id cost ~15× more. */
  private readonly pool = Buffer.alloc(4096);
  private used = this.pool.length;

  readonly config: TracingConfig;
  private readonly recorder?: SpanRecorder;
  constructor(
    config: TracingConfig,
    recorder?: SpanRecorder,
  ) {
    this.config = config;
    this.recorder = recorder;
  }

  private randomHex(bytes: number): string {
    if (this.used + bytes > this.pool.length) {
      randomFillSync(this.pool);
      this.used = 0;
    }
    const hex = this.pool.toString('hex', this.used, this.used + bytes);
    this.used += bytes;
    return hex;
  }

  /** Continues the request's valid `traceparent` (with its `tracestate`), or starts a trace. */
  begin(headers: IncomingHttpHeaders, method: string, startTime: number): RequestTrace {
    const p = parseTraceparent(headers['traceparent']);
    const tracestate = p === undefined ? undefined : parseTracestate(headers['tracestate']);
    if (this.recorder !== undefined) {
      const spans = this.recorder.begin(p === undefined ? undefined : { ...p, tracestate }, method, startTime);
      return new RequestTrace(spans.server, tracestate, spans);
    }
    const traceId = p?.traceId ?? this.randomHex(16);
    const sampled = p !== undefined ? p.sampled : Math.random() < this.config.sampleRatio;
    return new RequestTrace({ traceId, spanId: this.randomHex(8), sampled }, tracestate, undefined);
  }

  shutdown(waitMs: number): Promise<void> {
    return this.recorder?.shutdown(waitMs) ?? Promise.resolve();
  }
}

/** Tracing for `config`; the OpenTelemetry SDK is loaded only when spans are exported. */
export async function openTracing(config: TracingConfig): Promise<Tracing> {
  const otlp = config.otlp;
  if (otlp === undefined) return new Tracing(config);
  const { OtelRecorder } = await import('./otel.js');
  return new Tracing(config, new OtelRecorder({ ...config, otlp }));
}

/** Where a request's trace rides from arrival to its record. */
const TRACE = Symbol('portcullis.trace');
type Traced = { [TRACE]?: RequestTrace };

/** Joins the request to its trace (continued or started) as it arrives. */
export function traceRequest(req: IncomingMessage, tracing: Tracing, startTime: number): void {
  (req as Traced)[TRACE] = tracing.begin(req.headers, req.method ?? '', startTime);
}

export function traceOf(req: IncomingMessage): RequestTrace | undefined {
  return (req as Traced)[TRACE];
}
