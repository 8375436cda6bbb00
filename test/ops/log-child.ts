// Child process for log.test.ts: logs through the stdout logger, then behaves per argv[2].
import { createLogger, requestLogger } from '../../src/ops/log.js';
import type { RequestRecord } from '../../src/ops/record.js';

const mode = process.argv[2];
const logger = createLogger({ level: mode === 'request-warn' ? 'warn' : 'info', pretty: false });

const record = (n: number): RequestRecord => ({
  requestId: `req-${n}`,
  method: 'GET',
  path: '/films/ünï "quoted" \\ back',
  route: 'films',
  decision: 'allow',
  code: undefined,
  status: 200,
  latencyMs: 1.23456,
  authMs: 0.5,
  keyId: 'k1',
  subject: 'alice',
  method_: 'apiKey',
  clientIp: '127.0.0.1',
  upstream: 'api',
  upstreamMs: 1,
});

if (mode === 'quiet') {
  logger.info({ n: 1 }, 'one line');
  // Stay alive without logging more: the line must still come out.
  setTimeout(() => process.exit(0), 60_000);
} else if (mode === 'burst-exit') {
  for (let n = 0; n < 5000; n++) logger.info({ n }, 'line');
  process.exit(0);
} else if (mode === 'burst-crash') {
  for (let n = 0; n < 500; n++) logger.info({ n }, 'line');
  setImmediate(() => {
    throw new Error('crash');
  });
} else if (mode === 'request-lines') {
  // The same requests logged by requestLogger and by pino itself, for comparison: an
  // admitted one, and a refusal with fields missing and characters JSON must escape.
  const line = requestLogger(logger, (s) => `hashed(${s})`);
  const denied: RequestRecord = {
    ...record(2),
    path: '/a\u0001b\ud800c\u007f\u2028',
    route: undefined,
    decision: 'deny',
    code: 'key-invalid',
    status: 401,
    latencyMs: 0.0004,
    authMs: Number.NaN,
    keyId: undefined,
    subject: undefined,
    method_: undefined,
    upstream: undefined,
  };
  line(record(1));
  line(denied);
  setTimeout(() => {
    const r = record(1);
    logger.info({ requestId: r.requestId, route: r.route, method: r.method, path: r.path, decision: r.decision, status: r.status, latencyMs: 1.235, authMs: 0.5, upstream: r.upstream, keyId: r.keyId, subject: 'hashed(alice)', authMethod: r.method_, clientIp: r.clientIp }, 'request');
    const d = denied;
    logger.info({ requestId: d.requestId, route: undefined, method: d.method, path: d.path, decision: d.decision, code: d.code, status: d.status, latencyMs: 0, authMs: Number.NaN, upstream: undefined, keyId: undefined, subject: undefined, authMethod: undefined, clientIp: d.clientIp }, 'request');
  }, 50);
} else if (mode === 'request-exit' || mode === 'request-warn') {
  const line = requestLogger(logger, (s) => s);
  for (let n = 0; n < 2000; n++) line(record(n));
  logger.warn('done');
  process.exit(0);
}
