import t from 'tap';
import fc from 'fast-check';
import { parseTracestate, Tracing } from '../../src/ops/tracing.js';
import { configSchema } from '../../src/config/schema.js';
import { startRawUpstream } from '../hardening/raw-upstream.js';
import { startTestGateway } from '../helpers/gateway.js';
import { rawRequest } from '../helpers/raw.js';

const TID = '4bf92f3577b34da6a3ce929d0e0e4736';
const PID = '00f067aa0ba902b7';
const SHAPE = /^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$/;

const propagating = (sampleRatio = 1) => new Tracing(configSchema.shape.tracing.parse({ sampleRatio }));

/** The traceparent and tracestate the upstream would get for these inbound headers. */
function handOn(tracing: Tracing, headers: Record<string, string>) {
  const tr = tracing.begin(headers, 'GET', performance.now());
  return { traceId: tr.traceId, ...tr.upstream('GET', 'api') };
}

t.test('a valid traceparent is continued: same trace, the gateway as parent, the caller\'s sampling decision', async (t) => {
  const cases: Array<[string, string, string | undefined]> = [
    ['sampled', `00-${TID}-${PID}-01`, '01'],
    ['not sampled', `00-${TID}-${PID}-00`, '00'],
    ['other flag bits are not passed on', `00-${TID}-${PID}-03`, '01'],
    ['a later version with more fields', `01-${TID}-${PID}-01-whatever`, '01'],
  ];
  for (const [name, inbound, flags] of cases) {
    const out = handOn(propagating(0), { traceparent: inbound, tracestate: 'vendor=abc,other=1' });
    const m = SHAPE.exec(out.traceparent)!;
    t.equal(out.traceId, TID, name);
    t.equal(m[1], TID, `${name}: the upstream's trace id`);
    t.not(m[2], PID, `${name}: the parent is the gateway's span, not the caller's`);
    t.equal(out.traceparent.slice(-2), flags, `${name}: flags`);
    t.equal(out.tracestate, 'vendor=abc,other=1', `${name}: tracestate goes with the trace`);
  }
});

t.test('a malformed traceparent starts a new trace and drops its tracestate', async (t) => {
  const bad = [
    `00-${TID.toUpperCase()}-${PID}-01`,
    `00-${'0'.repeat(32)}-${PID}-01`,
    `00-${TID}-${'0'.repeat(16)}-01`,
    `ff-${TID}-${PID}-01`,
    `00-${TID}-${PID}-01-extra`,
    `00-${TID.slice(1)}-${PID}-01`,
    `00-${TID}-${PID}-1`,
    `00_${TID}_${PID}_01`,
    `00-${TID}-${PID}-01, 00-${TID}-${PID}-01`,
    '',
    'x',
  ];
  for (const inbound of bad) {
    const out = handOn(propagating(), { traceparent: inbound, tracestate: 'vendor=abc' });
    t.not(out.traceId, TID, `${JSON.stringify(inbound)}: a new trace`);
    t.match(out.traceparent, SHAPE);
    t.equal(out.traceparent.split('-')[1], out.traceId);
    t.equal(out.tracestate, undefined, `${JSON.stringify(inbound)}: no tracestate of another trace`);
  }
  t.equal(handOn(propagating(1), {}).traceparent.slice(-2), '01', 'a new trace is sampled at sampleRatio 1');
  t.equal(handOn(propagating(0), {}).traceparent.slice(-2), '00', 'and not at 0');
});

t.test('tracestate passes on only when every member is well-formed', async (t) => {
  const cases: Array<[string, string | undefined]> = [
    ['vendor=abc', 'vendor=abc'],
    [' a=1 , b=2 ', 'a=1,b=2'],
    ['tenant@system=x,rojo=00f067aa0ba902b7', 'tenant@system=x,rojo=00f067aa0ba902b7'],
    ['a=1,,b=2', 'a=1,b=2'],
    ['Upper=1', undefined],
    ['a=1,b', undefined],
    ['a=b=c', undefined],
    ['a=', undefined],
    [`k=${'v'.repeat(257)}`, undefined],
    [Array.from({ length: 33 }, (_, i) => `k${i}=v`).join(','), undefined],
    [Array.from({ length: 32 }, (_, i) => `k${i}=v`).join(','), Array.from({ length: 32 }, (_, i) => `k${i}=v`).join(',')],
    ['', undefined],
  ];
  for (const [inbound, want] of cases) t.equal(parseTracestate(inbound), want, JSON.stringify(inbound).slice(0, 60));
});

t.test('property: whatever the client sends, the upstream gets a well-formed traceparent of the gateway\'s own', async (t) => {
  const tracing = propagating();
  const hex = (n: number) => fc.stringMatching(new RegExp(`^[0-9a-fA-F]{${n}}$`));
  const header = fc.oneof(fc.string(), fc.tuple(hex(2), hex(32), hex(16), hex(2)).map((p) => p.join('-')));
  fc.assert(
    fc.property(header, fc.string(), (tp, ts) => {
      const out = handOn(tracing, { traceparent: tp, tracestate: ts });
      return SHAPE.test(out.traceparent) && out.traceparent !== tp && out.traceparent.split('-')[2] !== tp.split('-')[2];
    }),
    { numRuns: 2000 },
  );
  t.pass('2000 inbound shapes');
});

t.test('through the pipeline: the upstream receives exactly one traceparent, the gateway\'s; the log line has the trace id', async (t) => {
  const up = await startRawUpstream();
  t.teardown(() => up.close());
  const gw = await startTestGateway(`
upstreams: { api: { url: "${up.url}" } }
log: { level: info }
routes:
  - match: { path: "/**" }
    public: true
    upstream: api
`);
  t.teardown(() => gw.close());
  const port = Number(new URL(gw.url).port);
  const send = async (extra: string) => {
    const before = up.requests.length;
    const r = await rawRequest(port, `GET /p HTTP/1.1\r\nHost: a\r\n${extra}Connection: close\r\n\r\n`);
    t.equal(r.status, 200);
    const lines = up.requests[before]!.headerLines.filter((l) => /^trace(parent|state):/i.test(l));
    const log = JSON.parse(gw.lines.filter((l) => l.includes('"msg":"request"')).at(-1)!);
    return { lines, traceId: log.traceId as string };
  };

  const cont = await send(`Traceparent: 00-${TID}-${PID}-01\r\ntracestate: v=1\r\n`);
  t.equal(cont.lines.length, 2);
  t.match(cont.lines[0], new RegExp(`^traceparent: 00-${TID}-(?!${PID})[0-9a-f]{16}-01$`), 'continued with the gateway as parent');
  t.equal(cont.lines[1], 'tracestate: v=1');
  t.equal(cont.traceId, TID, 'the log line carries the trace id');

  const twice = await send(`traceparent: 00-${TID}-${PID}-01\r\ntraceparent: 00-${TID}-${PID}-01\r\ntracestate: v=1\r\n`);
  t.equal(twice.lines.length, 1, 'two traceparents: one new one, no tracestate');
  t.notMatch(twice.lines[0], TID);
  t.equal(twice.lines[0], `traceparent: 00-${twice.traceId}-${SHAPE.exec(twice.lines[0]!.slice(13))![2]}-01`);

  const none = await send('');
  t.equal(none.lines.length, 1, 'a trace is started for a request without one');
  t.match(none.lines[0], new RegExp(`^traceparent: 00-${none.traceId}-[0-9a-f]{16}-01$`));
});
