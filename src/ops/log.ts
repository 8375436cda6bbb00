import { createHmac, createSecretKey, randomBytes } from 'node:crypto';
import pino, { type Logger } from 'pino';
import type { RequestRecord } from './record.js';

export type { Logger };

export interface LogOptions {
  level: string;
  pretty: boolean;
  pii: 'hashed' | 'plain';
  salt: string;
}

/** Request lines are written together once this many characters wait… */
const BATCH_CHARS = 16_384;
/** …or once the oldest has waited this long. */
const BATCH_MS = 20;

/**
 * Request lines of a stdout logger made by `createLogger`, written without going through
 * pino's per-key serializer and without one write(2) per line: lines are rendered with
 * JSON.stringify (the same JSON pino writes for them, as this logger is configured) and
 * written together every 20 ms or 16 KiB. On a cached credential the request line was the
 * largest cost of the gateway's own. Pending lines are written when the process exits, a
 * crash included; only a SIGKILL can lose the last 20 ms of them.
 */
class RequestLines {
  static readonly #all = new Set<RequestLines>();
  static {
    process.once('exit', () => {
      for (const b of RequestLines.#all) b.flush();
    });
  }

  readonly #dest: pino.DestinationStream;
  /** `"level":…,"time":` is followed by the time, then these bindings (`,"pid":…`). */
  readonly #bindings: string;
  #lines: string[] = [];
  #chars = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(dest: pino.DestinationStream, bindings: string) {
    this.#dest = dest;
    this.#bindings = bindings;
    RequestLines.#all.add(this);
  }

  /** The start of the line pino writes at level 30, up to its bindings: `{"level":30,"time":…,"pid":…`. */
  head(): string {
    return `{"level":30,"time":${Date.now()}${this.#bindings}`;
  }

  pushLine(line: string): void {
    this.#lines.push(line);
    this.#chars += line.length;
    if (this.#chars >= BATCH_CHARS) this.flush();
    else if (this.#timer === undefined) {
      this.#timer = setTimeout(this.flush, BATCH_MS);
      this.#timer.unref();
    }
  }

  readonly flush = (): void => {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    if (this.#lines.length === 0) return;
    const text = this.#lines.length === 1 ? this.#lines[0]! : this.#lines.join('');
    this.#lines = [];
    this.#chars = 0;
    this.#dest.write(text);
  };
}

const requestLines = new WeakMap<Logger, RequestLines>();

/** The process logger: JSON lines on stdout (pino), or pretty when asked and pino-pretty is installed. */
export function createLogger(opts: Pick<LogOptions, 'level' | 'pretty'>, destination?: pino.DestinationStream): Logger {
  if (destination) return pino({ level: opts.level, base: undefined }, destination);
  if (opts.pretty) {
    try {
      return pino({ level: opts.level, transport: { target: 'pino-pretty', options: { colorize: true } } });
    } catch {
      // pino-pretty is a development dependency; without it, plain JSON.
    }
  }
  const stdout = pino.destination({ dest: 1, sync: true });
  const logger = pino({ level: opts.level, base: { pid: process.pid } }, stdout);
  requestLines.set(logger, new RequestLines(stdout, `,"pid":${process.pid}`));
  return logger;
}

/** Distinct subjects whose hashes are remembered; past this the memo starts over. */
const SUBJECT_MEMO_MAX = 10_000;

/** Subject as a keyed hash (HMAC-SHA-256, first 16 bytes hex) unless `pii: plain`. */
export function subjectHasher(pii: 'hashed' | 'plain', salt: string): (subject: string) => string {
  if (pii === 'plain') return (s) => s;
  // Without a configured salt, a per-process one still hides subjects from log readers
  // (but lines cannot be correlated across restarts).
  const key = createSecretKey(salt === '' ? randomBytes(32) : Buffer.from(salt));
  // One HMAC per request was a tenth of the gateway's CPU on a cached credential; the same
  // few subjects come back request after request, so their hashes are remembered.
  const memo = new Map<string, string>();
  return (s) => {
    let h = memo.get(s);
    if (h === undefined) {
      h = createHmac('sha256', key).update(s).digest('hex').slice(0, 32);
      if (memo.size >= SUBJECT_MEMO_MAX) memo.clear();
      memo.set(s, h);
    }
    return h;
  };
}

/** Characters JSON.stringify would escape (and lone surrogates, which it escapes too). */
const NEEDS_ESCAPE = /["\\\u0000-\u001f\u007f-\uffff]/;

/** `,"name":"value"` as JSON.stringify writes it; nothing for undefined. */
function str(name: string, v: string | undefined): string {
  if (v === undefined) return '';
  return NEEDS_ESCAPE.test(v) ? `,"${name}":${JSON.stringify(v)}` : `,"${name}":"${v}"`;
}

/** `,"name":n` as JSON.stringify writes it (non-finite numbers as null); nothing for undefined. */
function num(name: string, v: number | undefined): string {
  if (v === undefined) return '';
  return `,"${name}":${Number.isFinite(v) ? String(v) : 'null'}`;
}

/**
 * One JSON line per request (docs/reference/operations.md). Never a credential: the record carries none.
 * Written straight as text, field by field (byte for byte what pino writes for the same
 * fields): building an object to stringify it was the largest of the gateway's own costs
 * per request.
 */
export function requestLogger(logger: Logger, hashSubject: (s: string) => string): (r: RequestRecord) => void {
  const lines = requestLines.get(logger);
  return (r) => {
    if (!logger.isLevelEnabled('info')) return;
    const latencyMs = Math.round(r.latencyMs * 1000) / 1000;
    const authMs = Math.round(r.authMs * 1000) / 1000;
    const subject = r.subject === undefined ? undefined : hashSubject(r.subject);
    if (lines !== undefined) {
      lines.pushLine(
        lines.head() +
          str('requestId', r.requestId) +
          str('traceId', r.trace?.traceId) +
          str('route', r.route) +
          str('method', r.method) +
          str('path', r.path) +
          str('decision', r.decision) +
          str('code', r.code) +
          num('status', r.status) +
          num('latencyMs', latencyMs) +
          num('authMs', authMs) +
          str('upstream', r.upstream) +
          str('keyId', r.keyId) +
          str('subject', subject) +
          str('authMethod', r.method_) +
          str('clientIp', r.clientIp) +
          ',"msg":"request"}\n',
      );
      return;
    }
    logger.info(
      {
        requestId: r.requestId,
        traceId: r.trace?.traceId,
        route: r.route,
        method: r.method,
        path: r.path,
        decision: r.decision,
        code: r.code,
        status: r.status,
        latencyMs,
        authMs,
        upstream: r.upstream,
        keyId: r.keyId,
        subject,
        authMethod: r.method_,
        clientIp: r.clientIp,
      },
      'request',
    );
  };
}
