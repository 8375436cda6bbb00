import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Span, type Tracer } from '@opentelemetry/api';
import { parseTraceParent, TraceState } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor, ParentBasedSampler, RandomIdGenerator, TraceIdRatioBasedSampler } from '@opentelemetry/sdk-trace-base';
import type { TracingConfig } from '../config/schema.js';

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

/** Trace Context headers for the upstream: always the gateway's own, never the client's. */
export interface TraceHeaders {
  readonly traceparent: string;
  readonly tracestate: string | undefined;
}

function traceparent(traceId: string, spanId: string, sampled: boolean): string {
  return `00-${traceId}-${spanId}-${sampled ? '01' : '00'}`;
}

/**
 * The gateway's part in one request's trace. Without an exporter it only hands the trace
 * on (a span id of its own, the caller's sampling decision); with one it records a server
 * span and, for a proxied request, a client span that is the upstream's parent.
 */
export class RequestTrace {
  private client: Span | undefined;

  constructor(
    readonly traceId: string,
    private readonly spanId: string,
    private readonly sampled: boolean,
    private readonly tracestate: string | undefined,
    private readonly tracer: Tracer | undefined,
    private readonly server: Span | undefined,
  ) {}

  /** The headers the upstream gets; with spans recorded, starts the client span they name. */
  upstream(method: string, upstream: string): TraceHeaders {
    if (this.tracer === undefined || this.server === undefined) {
      return { traceparent: traceparent(this.traceId, this.spanId, this.sampled), tracestate: this.tracestate };
    }
    this.client ??= this.tracer.startSpan(method, { kind: SpanKind.CLIENT, attributes: { 'http.request.method': method, 'portcullis.upstream': upstream } }, trace.setSpan(ROOT_CONTEXT, this.server));
    const c = this.client.spanContext();
    return { traceparent: traceparent(c.traceId, c.spanId, (c.traceFlags & 1) === 1), tracestate: this.tracestate };
  }

  /** Ends the spans with what the request came to. Attributes name no credential. */
  end(r: TraceOutcome): void {
    const server = this.server;
    if (server === undefined || !server.isRecording()) return;
    const failed = r.status >= 500 || r.status === 0;
    if (this.client !== undefined) {
      if (r.status !== 0) this.client.setAttribute('http.response.status_code', r.status);
      if (failed) this.client.setStatus({ code: SpanStatusCode.ERROR });
      this.client.end();
    }
    const a: Attributes = { 'http.request.method': r.method, 'http.response.status_code': r.status, 'portcullis.decision': r.decision };
    if (r.path !== undefined) a['url.path'] = r.path;
    if (r.route !== undefined) a['http.route'] = r.route;
    if (r.code !== undefined) a['portcullis.code'] = r.code;
    if (r.keyId !== undefined) a['portcullis.key_id'] = r.keyId;
    server.setAttributes(a);
    if (r.route !== undefined) server.updateName(`${r.method} ${r.route}`);
    if (failed) server.setStatus({ code: SpanStatusCode.ERROR });
    server.end();
  }
}

/**
 * W3C Trace Context for every request (SPEC §12), and with `tracing.otlp` the OpenTelemetry
 * SDK exporting spans in batches over OTLP/HTTP JSON. Export runs beside the requests:
 * a collector that is down or hangs costs dropped spans, never a request's time.
 */
export class Tracing {
  private readonly ids = new RandomIdGenerator();
  private readonly provider: BasicTracerProvider | undefined;
  private readonly tracer: Tracer | undefined;

  /** `exporting: false` hands traces on without recording spans, whatever `otlp` says. */
  constructor(readonly config: TracingConfig, exporting = true) {
    const otlp = config.otlp;
    if (otlp === undefined || !exporting) return;
    const exporter = new OTLPTraceExporter({ url: otlp.endpoint, headers: { ...otlp.headers }, timeoutMillis: otlp.timeout });
    this.provider = new BasicTracerProvider({
      resource: resourceFromAttributes({ 'service.name': config.serviceName }),
      sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(config.sampleRatio) }),
      spanProcessors: [
        new BatchSpanProcessor(exporter, {
          scheduledDelayMillis: config.batchDelay,
          maxQueueSize: config.maxQueueSize,
          maxExportBatchSize: Math.min(512, config.maxQueueSize),
          exportTimeoutMillis: otlp.timeout,
        }),
      ],
    });
    this.tracer = this.provider.getTracer('portcullis');
  }

  /** Continues the request's valid `traceparent` (and its `tracestate`), or starts a trace. */
  begin(headers: IncomingHttpHeaders, method: string, startTime: number): RequestTrace {
    const raw = headers['traceparent'];
    // Repeated traceparent headers arrive joined by ", " and so fail to parse: a new trace.
    const parent = typeof raw === 'string' ? parseTraceParent(raw) : null;
    const ts = parent === null ? undefined : headers['tracestate'];
    const tracestate = typeof ts === 'string' && ts !== '' ? new TraceState(ts).serialize() || undefined : undefined;
    if (this.tracer === undefined) {
      const traceId = parent?.traceId ?? this.ids.generateTraceId();
      const sampled = parent !== null ? (parent.traceFlags & 1) === 1 : Math.random() < this.config.sampleRatio;
      return new RequestTrace(traceId, this.ids.generateSpanId(), sampled, tracestate, undefined, undefined);
    }
    const ctx = parent === null ? ROOT_CONTEXT : trace.setSpanContext(ROOT_CONTEXT, { ...parent, isRemote: true, ...(tracestate === undefined ? {} : { traceState: new TraceState(tracestate) }) });
    const server = this.tracer.startSpan(method, { kind: SpanKind.SERVER, startTime }, ctx);
    const c = server.spanContext();
    return new RequestTrace(c.traceId, c.spanId, (c.traceFlags & 1) === 1, tracestate, this.tracer, server);
  }

  /** Sends what is queued, waiting at most `waitMs` for a collector that does not answer. */
  async shutdown(waitMs: number): Promise<void> {
    if (this.provider === undefined) return;
    let timer: NodeJS.Timeout | undefined;
    const gaveUp = new Promise<void>((resolve) => { timer = setTimeout(resolve, waitMs); });
    await Promise.race([this.provider.shutdown().catch(() => undefined), gaveUp]);
    clearTimeout(timer);
  }
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
