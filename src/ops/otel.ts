import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Span, type Tracer } from '@opentelemetry/api';
import { TraceState } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler } from '@opentelemetry/sdk-trace-base';
import type { TracingConfig } from '../config/schema.js';
import type { ParentContext, SpanIds, SpanPair, SpanRecorder, TraceOutcome } from './tracing.js';

function ids(s: Span): SpanIds {
  const c = s.spanContext();
  return { traceId: c.traceId, spanId: c.spanId, sampled: (c.traceFlags & 1) === 1 };
}

/** A request's server span and, once it is proxied, its client span. */
class OtelSpans implements SpanPair {
  private clientSpan: Span | undefined;
  readonly server: SpanIds;

  private readonly tracer: Tracer;
  private readonly span: Span;
  constructor(tracer: Tracer, span: Span) {
    this.tracer = tracer;
    this.span = span;
    this.server = ids(span);
  }

  client(method: string, upstream: string): SpanIds {
    this.clientSpan ??= this.tracer.startSpan(method, { kind: SpanKind.CLIENT, attributes: { 'http.request.method': method, 'portcullis.upstream': upstream } }, trace.setSpan(ROOT_CONTEXT, this.span));
    return ids(this.clientSpan);
  }

  /** Attributes name no credential: the normalized path without its query, the key's id. */
  end(r: TraceOutcome): void {
    const span = this.span;
    if (!span.isRecording()) return;
    const failed = r.status >= 500 || r.status === 0;
    if (this.clientSpan !== undefined) {
      if (r.status !== 0) this.clientSpan.setAttribute('http.response.status_code', r.status);
      if (failed) this.clientSpan.setStatus({ code: SpanStatusCode.ERROR });
      this.clientSpan.end();
    }
    const a: Attributes = { 'http.request.method': r.method, 'http.response.status_code': r.status, 'portcullis.decision': r.decision };
    if (r.path !== undefined) a['url.path'] = r.path;
    if (r.route !== undefined) a['http.route'] = r.route;
    if (r.code !== undefined) a['portcullis.code'] = r.code;
    if (r.keyId !== undefined) a['portcullis.key_id'] = r.keyId;
    span.setAttributes(a);
    if (r.route !== undefined) span.updateName(`${r.method} ${r.route}`);
    if (failed) span.setStatus({ code: SpanStatusCode.ERROR });
    span.end();
  }
}

/**
 * The OpenTelemetry SDK exporting spans in batches over OTLP/HTTP JSON. Loaded only when
 * `tracing.otlp` is set: the packages hold about 23 MB of RSS once imported.
 */
export class OtelRecorder implements SpanRecorder {
  private readonly provider: BasicTracerProvider;
  private readonly tracer: Tracer;

  constructor(config: TracingConfig & { otlp: NonNullable<TracingConfig['otlp']> }) {
    const otlp = config.otlp;
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

  begin(parent: ParentContext | undefined, method: string, startTime: number): SpanPair {
    const ctx = parent === undefined
      ? ROOT_CONTEXT
      : trace.setSpanContext(ROOT_CONTEXT, {
          traceId: parent.traceId,
          spanId: parent.spanId,
          traceFlags: parent.sampled ? 1 : 0,
          isRemote: true,
          ...(parent.tracestate === undefined ? {} : { traceState: new TraceState(parent.tracestate) }),
        });
    return new OtelSpans(this.tracer, this.tracer.startSpan(method, { kind: SpanKind.SERVER, startTime }, ctx));
  }

  async shutdown(waitMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const gaveUp = new Promise<void>((resolve) => { timer = setTimeout(resolve, waitMs); });
    await Promise.race([this.provider.shutdown().catch(() => undefined), gaveUp]);
    clearTimeout(timer);
  }
}
