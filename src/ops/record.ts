import type { RequestTrace } from './tracing.js';

/*
 * The record of one finished request: the pipeline writes it, the log line, metrics and
 * traces read it. It lives here, beside its readers, so that ops/ never imports the pipeline.
 */

/** One finished request, for the log line and metrics. */
export interface RequestRecord {
  readonly requestId: string;
  readonly method: string;
  readonly path: string | undefined;
  readonly route: string | undefined;
  readonly decision: 'allow' | 'deny' | 'error';
  readonly code: string | undefined;
  readonly status: number;
  /** Milliseconds from arrival to the end of the response. */
  readonly latencyMs: number;
  /** Milliseconds spent deciding (steps 0–6). */
  readonly authMs: number;
  readonly keyId: string | undefined;
  readonly subject: string | undefined;
  readonly method_: string | undefined;
  readonly clientIp: string | undefined;
  readonly upstream: string | undefined;
  readonly upstreamMs: number | undefined;
  /** The request's trace (its id for the log line; its spans end with the record). */
  readonly trace?: RequestTrace | undefined;
  /** The rate-limit policy that refused the request (429 `rate-limited`). */
  readonly ratePolicy?: string | undefined;
}

/** Told of every finished request (the log line, metrics, tests). */
export interface PipelineObserver {
  onRequest(record: RequestRecord): void;
}
