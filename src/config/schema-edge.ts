import { z } from 'zod';
import { nonEmpty, port, timer } from './schema-parts.js';

/** HTTPS on the main listener (docs/reference/operations.md, TLS). Files are read at load and on every reload. */
export const listenTls = z.strictObject({
  /** PEM certificate chain (leaf first); a path relative to the config file's folder. */
  cert: nonEmpty,
  /** PEM private key of `cert`. */
  key: nonEmpty,
  /** PEM CA certificates that sign client certificates. */
  ca: nonEmpty.optional(),
  /** `request`: ask for a client certificate, admit without one; `require`: no handshake without one signed by `ca`. */
  clientCertificates: z.enum(['none', 'request', 'require']).default('none'),
  minVersion: z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2'),
});

export const listen = z.strictObject({
  host: nonEmpty.default('0.0.0.0'),
  port: port.default(8080),
  /** Maximum time to receive the whole request head (slowloris protection). */
  headersTimeout: timer.default(10_000),
  /** Maximum time for a whole request (head and body) from the client. 0 disables. */
  requestTimeout: timer.default(300_000),
  keepAliveTimeout: timer.default(5_000),
  maxHeaderSize: z.number().int().min(1024).max(1_048_576).default(16_384),
  maxConnections: z.number().int().min(0).default(0),
  tls: listenTls.optional(),
});

export const admin = z.strictObject({
  host: nonEmpty.default('127.0.0.1'),
  port: port.default(9090),
  /** Bearer token for the admin API (keys, revocations). Typically `${PORTCULLIS_ADMIN_TOKEN}`. */
  token: z
    .string()
    .refine((t) => t === '' || t.length >= 16, 'an admin token must be at least 16 characters (it is the whole credential for keys and revocations; e.g. openssl rand -base64 32), or empty to turn the admin API off')
    .default(''),
  /** Admin-role JWTs are also accepted by the admin API when this is true. */
  acceptJwt: z.boolean().default(false),
  /**
   * Host names the admin listener answers besides IP literals and `localhost` (any other
   * `Host` is refused, so a web page cannot reach it through DNS rebinding).
   */
  allowedHosts: z.array(nonEmpty).default([]),
});

export const upstream = z.strictObject({
  url: z.url({ protocol: /^https?$/, error: 'expected an http:// or https:// URL' }),
  timeout: timer.default(30_000),
  connectTimeout: timer.default(5_000),
  maxSockets: z.number().int().min(1).default(256),
  /** For `https://` upstreams behind a private CA or requiring a client certificate (docs/reference/operations.md, TLS). */
  tls: z
    .strictObject({
      /** PEM CA certificates the upstream's certificate must chain to (instead of the system's). */
      ca: nonEmpty.optional(),
      /** PEM client certificate and its key, for upstreams that require one. */
      cert: nonEmpty.optional(),
      key: nonEmpty.optional(),
      /** Name sent as SNI and checked against the upstream's certificate; default: the URL's host. */
      servername: nonEmpty.optional(),
    })
    .optional(),
});

/** W3C Trace Context is always on; spans are exported only with `otlp` (docs/reference/operations.md, Tracing). */
export const tracing = z.strictObject({
  otlp: z
    .strictObject({
      /** OTLP/HTTP traces endpoint, e.g. http://collector:4318/v1/traces (JSON encoding). */
      endpoint: z.url({ protocol: /^https?$/, error: 'expected an http:// or https:// URL' }),
      headers: z.record(z.string(), z.string()).default({}),
      /** Longest wait for the collector per export; spans queued meanwhile are dropped past `maxQueueSize`. */
      timeout: timer.default(10_000),
    })
    .optional(),
  /** Fraction of new traces recorded; an incoming `traceparent` keeps its caller's decision. */
  sampleRatio: z.number().min(0).max(1).default(1),
  serviceName: nonEmpty.default('portcullis'),
  /** How long finished spans wait to be sent in one batch. */
  batchDelay: timer.default(5_000),
  /** Finished spans held at most while the collector is slow or down; more are dropped. */
  maxQueueSize: z.number().int().min(1).default(2048),
});
