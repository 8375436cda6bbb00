import t from 'tap';
import type { IncomingHttpHeaders } from 'node:http';
import { extractCredential, extractOptionsFromConfig, type ExtractOptions } from '../../src/credentials/extract.js';
import { isCompactJws, stripPreamble } from '../../src/credentials/preamble.js';
import { GatewayError, type ProblemCode } from '../../src/http/problem.js';
import { configSchema } from '../../src/config/schema.js';

const b64 = (v: unknown): string => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
const JWT = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub: 'alice', exp: 2e9 })}.${b64('signature-bytes-here')}`;
const JWT2 = `${b64({ alg: 'HS256' })}.${b64({ sub: 'bob' })}.${b64('other-signature')}`;
const KEY = 'pcl_01HZX3_s3cr3tS3cr3tS3cr3tS3cr3tS3cr3tS3cr3tAbC';

const opts: ExtractOptions = { schemes: ['Bearer', 'ApiKey'], headers: ['x-api-key', 'x-legacy-token'], queryParams: ['api_key', 'token'], maxBytes: 256 };
const noQuery: ExtractOptions = { ...opts, queryParams: [] };

type Want =
  | { credential: null; query?: string }
  | { kind: 'jwt' | 'apiKey'; value: string; source: string; query?: string }
  | { code: ProblemCode };
type Case = [name: string, headers: IncomingHttpHeaders, query: string, want: Want, options?: ExtractOptions];

const cases: Case[] = [
  ['nothing', {}, '', { credential: null }],
  ['unrelated headers and query', { accept: '*/*' }, '?page=2', { credential: null, query: '?page=2' }],
  ['Bearer JWT', { authorization: `Bearer ${JWT}` }, '', { kind: 'jwt', value: JWT, source: 'authorization' }],
  ['bearer scheme lower-case', { authorization: `bearer ${JWT}` }, '', { kind: 'jwt', value: JWT, source: 'authorization' }],
  ['BEARER scheme upper-case', { authorization: `BEARER ${KEY}` }, '', { kind: 'apiKey', value: KEY, source: 'authorization' }],
  ['ApiKey scheme', { authorization: `ApiKey ${KEY}` }, '', { kind: 'apiKey', value: KEY, source: 'authorization' }],
  ['several spaces after the scheme', { authorization: `Bearer    ${KEY}  ` }, '', { kind: 'apiKey', value: KEY, source: 'authorization' }],
  ['Basic is not a credential', { authorization: 'Basic dXNlcjpwYXNz' }, '', { credential: null }],
  ['Basic plus key header: the key', { authorization: 'Basic dXNlcjpwYXNz', 'x-api-key': KEY }, '', { kind: 'apiKey', value: KEY, source: 'x-api-key' }],
  ['scheme prefix is not the scheme', { authorization: `Bearerx ${KEY}` }, '', { credential: null }],
  ['scheme with a non-letter that folds to a letter', { authorization: `Bea\u0012er ${KEY}` }, '', { credential: null }],
  ['no scheme at all', { authorization: KEY }, '', { credential: null }],
  ['configured scheme without a credential', { authorization: 'Bearer' }, '', { code: 'bad-request' }],
  ['configured scheme with two tokens', { authorization: `Bearer ${KEY} extra` }, '', { code: 'bad-request' }],
  ['configured scheme with a tab inside', { authorization: `Bearer a\tb` }, '', { code: 'bad-request' }],
  ['key header', { 'x-api-key': KEY }, '', { kind: 'apiKey', value: KEY, source: 'x-api-key' }],
  ['second key header', { 'x-legacy-token': KEY }, '', { kind: 'apiKey', value: KEY, source: 'x-legacy-token' }],
  ['key header trimmed', { 'x-api-key': `  ${KEY} ` }, '', { kind: 'apiKey', value: KEY, source: 'x-api-key' }],
  ['empty key header is no credential', { 'x-api-key': '' }, '', { credential: null }],
  ['JWT in a key header is a JWT', { 'x-api-key': JWT }, '', { kind: 'jwt', value: JWT, source: 'x-api-key' }],
  ['preamble stripped', { 'x-api-key': `api.example.com:443:${KEY}` }, '', { kind: 'apiKey', value: KEY, source: 'x-api-key' }],
  ['preamble stripped from Bearer', { authorization: `Bearer api.example.com:443:${KEY}` }, '', { kind: 'apiKey', value: KEY, source: 'authorization' }],
  ['preamble before a JWT', { authorization: `Bearer host:1:${JWT}` }, '', { kind: 'jwt', value: JWT, source: 'authorization' }],
  ['nothing after the preamble', { 'x-api-key': 'host:443:' }, '', { code: 'key-invalid' }],
  ['a lone colon', { authorization: 'Bearer :' }, '', { code: 'key-invalid' }],
  ['same value twice is fine', { authorization: `Bearer ${KEY}`, 'x-api-key': KEY }, '', { kind: 'apiKey', value: KEY, source: 'authorization' }],
  ['same value once with a preamble', { authorization: `Bearer ${KEY}`, 'x-api-key': `h:1:${KEY}` }, '', { kind: 'apiKey', value: KEY, source: 'authorization' }],
  ['different header and Authorization', { authorization: `Bearer ${JWT}`, 'x-api-key': KEY }, '', { code: 'bad-request' }],
  ['two different key headers', { 'x-api-key': KEY, 'x-legacy-token': KEY + 'x' }, '', { code: 'bad-request' }],
  ['two different JWTs', { authorization: `Bearer ${JWT}`, 'x-api-key': JWT2 }, '', { code: 'bad-request' }],
  ['Node-joined duplicate header value', { 'x-api-key': `${KEY}, other` }, '', { kind: 'apiKey', value: `${KEY}, other`, source: 'x-api-key' }],
  ['header given as a list of two', { 'x-api-key': [KEY, 'b'] }, '', { code: 'bad-request' }],
  ['header given as a list of one', { 'x-api-key': [KEY] }, '', { kind: 'apiKey', value: KEY, source: 'x-api-key' }],
  ['credential at the limit', { 'x-api-key': 'k'.repeat(256) }, '', { kind: 'apiKey', value: 'k'.repeat(256), source: 'x-api-key' }],
  ['credential over the limit', { 'x-api-key': 'k'.repeat(257) }, '', { code: 'bad-request' }],
  ['Bearer over the limit', { authorization: 'Bearer ' + 'k'.repeat(257) }, '', { code: 'bad-request' }],
  ['limit counts the preamble', { 'x-api-key': 'h'.repeat(250) + ':' + 'k'.repeat(10) }, '', { code: 'bad-request' }],

  // Query parameters
  ['query key, only parameter', {}, `?api_key=${KEY}`, { kind: 'apiKey', value: KEY, source: 'query:api_key', query: '' }],
  ['query key first', {}, `?api_key=${KEY}&x=1`, { kind: 'apiKey', value: KEY, source: 'query:api_key', query: '?x=1' }],
  ['query key in the middle', {}, `?a=1&api_key=${KEY}&b=2`, { kind: 'apiKey', value: KEY, source: 'query:api_key', query: '?a=1&b=2' }],
  ['query key last', {}, `?a=1&b=2&token=${KEY}`, { kind: 'apiKey', value: KEY, source: 'query:token', query: '?a=1&b=2' }],
  ['query JWT', {}, `?token=${JWT}`, { kind: 'jwt', value: JWT, source: 'query:token', query: '' }],
  ['same key twice in the query, both removed', {}, `?api_key=${KEY}&a=1&token=${KEY}`, { kind: 'apiKey', value: KEY, source: 'query:api_key', query: '?a=1' }],
  ['different keys in the query', {}, `?api_key=${KEY}&api_key=other`, { code: 'bad-request' }],
  ['query and header agree', { 'x-api-key': KEY }, `?api_key=${KEY}`, { kind: 'apiKey', value: KEY, source: 'x-api-key', query: '' }],
  ['query and header differ', { 'x-api-key': KEY }, '?api_key=other', { code: 'bad-request' }],
  ['encoded parameter name recognised', {}, `?api%5Fkey=${KEY}&b=1`, { kind: 'apiKey', value: KEY, source: 'query:api_key', query: '?b=1' }],
  ['encoded preamble in the value', {}, `?api_key=host%3A443%3A${KEY}`, { kind: 'apiKey', value: KEY, source: 'query:api_key', query: '' }],
  ['plus decodes to space like a form', {}, '?api_key=a+b', { kind: 'apiKey', value: 'a b', source: 'query:api_key', query: '' }],
  ['%2B decodes to plus', {}, '?api_key=a%2Bb', { kind: 'apiKey', value: 'a+b', source: 'query:api_key', query: '' }],
  ['invalid percent-encoding in the value', {}, '?api_key=%zz', { code: 'bad-request' }],
  ['empty value removed, no credential', {}, '?api_key=&a=1', { credential: null, query: '?a=1' }],
  ['bare name removed, no credential', {}, '?a=1&api_key', { credential: null, query: '?a=1' }],
  ['name match is exact', {}, `?api_keys=${KEY}&xapi_key=1`, { credential: null, query: `?api_keys=${KEY}&xapi_key=1` }],
  // Another spelling a lenient upstream reads as a key parameter is refused, never forwarded.
  ['name in upper case', {}, `?API_KEY=${KEY}`, { code: 'bad-request' }],
  ['name in mixed case', {}, `?a=1&Token=${KEY}`, { code: 'bad-request' }],
  ['name with a dot for the underscore (PHP)', {}, `?api.key=${KEY}`, { code: 'bad-request' }],
  ['name with a space for the underscore (PHP)', {}, `?api+key=${KEY}`, { code: 'bad-request' }],
  ['name with a leading space (PHP)', {}, `?%20api_key=${KEY}`, { code: 'bad-request' }],
  ['name as an array (PHP)', {}, `?api_key[]=${KEY}`, { code: 'bad-request' }],
  ['name as an array, encoded', {}, `?api_key%5B0%5D=${KEY}`, { code: 'bad-request' }],
  ['name with an open bracket for the underscore (PHP)', {}, `?api[key=${KEY}`, { code: 'bad-request' }],
  ['name cut at a NUL byte (PHP)', {}, `?api_key%00=${KEY}`, { code: 'bad-request' }],
  ['name cut at a NUL byte, more after it (PHP)', {}, `?api_key%00x=${KEY}`, { code: 'bad-request' }],
  ['NUL-cut name with an invalid escape after it (PHP decodes what it can)', {}, `?api_key%00%ZZ=${KEY}`, { code: 'bad-request' }],
  ['NUL-cut name, a leading +, invalid UTF-8 after it (PHP)', {}, `?+api%5Fkey%00%FF=${KEY}`, { code: 'bad-request' }],
  ['array name with an invalid escape inside the brackets (PHP)', {}, `?api%5Fkey[%ZZ]=${KEY}`, { code: 'bad-request' }],
  ['name in brackets (Rack 2)', {}, `?[api_key]=${KEY}`, { code: 'bad-request' }],
  ['name after a closing bracket (Rack 2)', {}, `?]api_key=${KEY}`, { code: 'bad-request' }],
  ['name before a closing bracket (Rack 2)', {}, `?api_key%5D=${KEY}`, { code: 'bad-request' }],
  ['array name with more after it (PHP, qs)', {}, `?api_key[x]junk=${KEY}`, { code: 'bad-request' }],
  ['array name, empty brackets, more after it (PHP, qs)', {}, `?api_key[]x=${KEY}`, { code: 'bad-request' }],
  ['pair after a semicolon (Rack 2, Perl CGI)', {}, `?x=1;api_key=${KEY}`, { code: 'bad-request' }],
  ['upper-case pair after a semicolon', {}, `?x=1;TOKEN=${KEY}`, { code: 'bad-request' }],
  ['other spelling beside a header credential', { 'x-api-key': KEY }, '?API_KEY=other', { code: 'bad-request' }],
  ['other spelling with an empty value', {}, '?API_KEY=', { code: 'bad-request' }],
  ['other spelling after an exact one', {}, `?api_key=${KEY}&Api_Key=other`, { code: 'bad-request' }],
  ['key parameter names inside values are values', {}, '?q=api_key&r=API_KEY%3Dx', { credential: null, query: '?q=api_key&r=API_KEY%3Dx' }],
  ['semicolons without a key name pass', {}, '?filter=a;b=2', { credential: null, query: '?filter=a;b=2' }],
  ['other spellings pass when no query parameters are configured', {}, `?API_KEY=${KEY}`, { credential: null, query: `?API_KEY=${KEY}` }, noQuery],
  ['empty pairs kept around a removal', {}, `?a=1&&api_key=${KEY}&b`, { kind: 'apiKey', value: KEY, source: 'query:api_key', query: '?a=1&&b' }],
  ['query over the limit', {}, `?api_key=${'k'.repeat(257)}`, { code: 'bad-request' }],
  ['query parameters not configured', {}, `?api_key=${KEY}`, { credential: null, query: `?api_key=${KEY}` }, noQuery],
  ['no schemes configured', { authorization: `Bearer ${KEY}` }, '', { credential: null }, { ...opts, schemes: [] }],
];

for (const [name, headers, query, want, options = opts] of cases) {
  t.test(name, async (t) => {
    if ('code' in want) {
      let thrown: unknown;
      try {
        extractCredential(headers, query, options);
      } catch (err) {
        thrown = err;
      }
      t.ok(thrown instanceof GatewayError, 'throws a GatewayError');
      t.equal((thrown as GatewayError).code, want.code, `code ${want.code}`);
      // Details help the caller but never echo the secret.
      t.notMatch((thrown as Error).message, KEY, 'detail does not contain the key');
      t.notMatch((thrown as Error).message, JWT, 'detail does not contain the token');
      return;
    }
    const got = extractCredential(headers, query, options);
    t.equal(got.query, want.query ?? query, 'query');
    if ('credential' in want) t.equal(got.credential, null, 'no credential');
    else t.same(got.credential, { kind: want.kind, value: want.value, source: want.source }, 'credential');
  });
}

t.test('the query string is returned as is when nothing is removed', async (t) => {
  const q = '?a=1&b=2';
  t.equal(extractCredential({}, q, opts).query, q);
  t.equal(extractCredential({}, q, noQuery).query, q);
});

const preambles: Array<[string, string]> = [
  ['KEY', 'KEY'],
  ['api.example.com:443:KEY', 'KEY'],
  ['a:b', 'b'],
  ['host:443:', ''],
  [':', ''],
  ['', ''],
  ['[::1]:443:KEY', 'KEY'],
];
for (const [input, want] of preambles) t.equal(stripPreamble(input), want, `stripPreamble(${JSON.stringify(input)})`);

const jws: Array<[string, string, boolean]> = [
  ['JWT', JWT, true],
  ['header with spaces', `${b64('{ "alg" : "ES256" }')}.${b64('{}')}.${b64('s')}`, true],
  ['native key', KEY, false],
  ['two parts', `${b64({ alg: 'HS256' })}.${b64({})}`, false],
  ['four parts', `${JWT}.${b64('x')}`, false],
  ['empty signature (alg none style)', `${b64({ alg: 'none' })}.${b64({})}.`, false],
  ['empty payload', `${b64({ alg: 'HS256' })}..${b64('s')}`, false],
  ['header is not JSON', 'abc.def.ghi', false],
  ['header is braces around non-JSON (shape only; the verifier rejects it)', `${b64('{not json}')}.${b64({})}.${b64('s')}`, true],
  ['header is an empty object', `${b64('{}')}.${b64({})}.${b64('s')}`, true],
  ['header is a lone brace', `${b64('{')}.${b64({})}.${b64('s')}`, false],
  ['header has a trailing newline', `${b64('{"alg":"HS256"}\n')}.${b64({})}.${b64('s')}`, true],
  ['header is a JSON array', `${b64([1])}.${b64({})}.${b64('s')}`, false],
  ['header is JSON null', `${b64('null')}.${b64({})}.${b64('s')}`, false],
  ['header is a JSON string', `${b64('"x"')}.${b64({})}.${b64('s')}`, false],
  ['padded base64', `${b64({ alg: 'HS256' })}=.${b64({})}.${b64('s')}`, false],
  ['standard base64 characters', `${b64({ alg: 'HS256' })}.${b64({})}+/.${b64('s')}`, false],
  ['impossible base64 length', `${b64({ alg: 'HS256' })}.${b64({})}.abcde`, false],
  ['non-ASCII in a part', `${b64({ alg: 'HS256' })}.${b64({})}.sig\u00e9`, false],
  ['dotted legacy key', 'live.4f9a2c.secret', false],
  ['a line break after the token', `${JWT}\n`, false],
  ['a line break inside a part', `${b64({ alg: 'HS256' })}.${b64({})}\nx.${b64('s')}`, false],
];
for (const [name, input, want] of jws) t.equal(isCompactJws(input), want, `isCompactJws: ${name}`);

t.test('options from the config', async (t) => {
  const config = configSchema.parse({
    upstreams: { api: { url: 'http://127.0.0.1:3000' } },
    apiKeys: { headers: ['X-Api-Key'], queryParams: ['api_key'] },
    routes: [{ match: { path: '/**' }, upstream: 'api' }],
  });
  t.same(extractOptionsFromConfig(config), { schemes: ['Bearer', 'ApiKey'], headers: ['x-api-key'], queryParams: ['api_key'], maxBytes: 8192 });
});

t.test('a long query of pairs without "=" is read in linear time', async (t) => {
  // Quadratic scans over 1 MB would run for minutes and fail the file on its timeout.
  const q = `?${'a&'.repeat(1 << 19)}b;c`;
  t.equal(extractCredential({}, q, opts).query, q);
  t.equal(extractCredential({}, `?${'a;'.repeat(1 << 19)}`, opts).credential, null);
});
