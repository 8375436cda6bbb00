import t from 'tap';
import { readFileSync } from 'node:fs';
import { PROBLEMS, PROBLEM_CODES, GatewayError, challengeFor, problemBody } from '../../src/http/problem.js';

/** Reads `| `code`, `code` | status |` rows from a markdown table that follows `heading`. */
function tableCodes(markdown: string, heading: RegExp): Map<string, number> {
  const start = markdown.search(heading);
  if (start === -1) throw new Error(`heading ${heading} not found`);
  const out = new Map<string, number>();
  const lines = markdown.slice(start).split('\n').slice(1);
  let inTable = false;
  for (const line of lines) {
    if (line.startsWith('|')) {
      inTable = true;
      const cells = line.split('|').map((c) => c.trim());
      const status = Number(cells[2]);
      if (!Number.isInteger(status)) continue;
      for (const m of cells[1]!.matchAll(/`([a-z-]+)`/g)) out.set(m[1]!, status);
    } else if (inTable) break;
  }
  return out;
}

const table = new Map(PROBLEM_CODES.map((c) => [c, PROBLEMS[c].status]));

// The README's table (what a user reads first) and the reference page (what the code cites)
// must both list exactly the codes the gateway can answer with, at their statuses.
for (const [file, heading] of [
  ['README.md', /^## Errors/m],
  ['docs/reference/responses.md', /^## Codes/m],
] as const) {
  t.test(`${file} error table matches the code table`, async (t) => {
    t.same(Object.fromEntries(tableCodes(readFileSync(file, 'utf8'), heading)), Object.fromEntries(table));
  });
}

t.test('the table reader finds a code that is missing or at the wrong status', async (t) => {
  const doc = '## Codes\n\n| code | status |\n| --- | --- |\n| `bad-request` | 400 |\n| `token-missing`, `token-invalid` | 402 |\n\nafter\n| `x` | 500 |\n';
  t.same(Object.fromEntries(tableCodes(doc, /^## Codes/m)), { 'bad-request': 400, 'token-missing': 402, 'token-invalid': 402 });
  t.throws(() => tableCodes(doc, /^## Errors/m), /heading/);
});

t.test('every code has a title, a status class that fits, and 401s a challenge', async (t) => {
  for (const code of PROBLEM_CODES) {
    const p = PROBLEMS[code];
    t.ok(p.title.length > 0, `${code} has a title`);
    const err = new GatewayError(code, 'detail');
    t.equal(err.status, p.status);
    const body = problemBody(err, 'rid');
    t.same(Object.keys(body).sort(), ['code', 'detail', 'requestId', 'status', 'title', 'type']);
    t.equal(body.type, `urn:portcullis:problem:${code}`);
    if (p.status === 401) t.match(challengeFor(err), /^Bearer realm="portcullis"/, `${code} has a challenge`);
  }
  t.equal(challengeFor(new GatewayError('token-expired', 'The "token" expired\r\n')), 'Bearer realm="portcullis", error="invalid_token", error_description="The token expired"', 'challenge text cannot break the header');
});

t.test('refusals (4xx) skip the stack capture; faults (5xx) keep theirs', async (t) => {
  const limit = Error.stackTraceLimit;
  const refusal = new GatewayError('key-invalid', 'The API key is not valid.');
  t.equal(Error.stackTraceLimit, limit, 'the global stack trace limit is restored');
  t.notMatch(refusal.stack ?? '', /\n\s+at /, 'no frames on a 4xx');
  t.match(refusal.stack ?? '', /The API key is not valid\./, 'the message is still there');
  const fault = new GatewayError('upstream-unavailable', 'down', { cause: new Error('ECONNREFUSED') });
  t.match(fault.stack ?? '', /\n\s+at /, 'frames on a 5xx');
  t.equal(Error.stackTraceLimit, limit);
  t.ok(refusal instanceof GatewayError && refusal.status === 401 && refusal.code === 'key-invalid');
});
