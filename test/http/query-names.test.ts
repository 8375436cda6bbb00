import t from 'tap';
import { decodeName, foldName, foldedNames, formDecode, hasMethodOverride, readings } from '../../src/http/query-names.js';

t.test('foldName reads a name as the most lenient servers do', async (t) => {
  const cases: Array<[string, string]> = [
    ['api_key', 'api_key'],
    ['API_KEY', 'api_key'],
    ['Api_Key', 'api_key'],
    ['api.key', 'api_key'],
    ['api key', 'api_key'],
    ['  api_key', 'api_key'],
    ['api_key[]', 'api_key'],
    ['api_key[0]', 'api_key'],
    ['api_key[a][b]', 'api_key'],
    ['api[key', 'api_key'],
    ['[api_key]', '_api_key]'],
    ['.method', '_method'],
    ['_METHOD', '_method'],
    ['api_keys', 'api_keys'],
    ['', ''],
  ];
  for (const [name, want] of cases) t.equal(foldName(name), want, JSON.stringify(name));
});

t.test('readings: what PHP, qs and Rack 2 may each take a name for', async (t) => {
  const cases: Array<[string, string[]]> = [
    ['api_key', ['api_key']],
    ['api_key\0', ['api_key']],
    ['api_key\0junk', ['api_key']],
    ['[api_key]', ['_api_key]', 'api_key']],
    [']api_key', [']api_key', 'api_key']],
    ['api_key]', ['api_key]', 'api_key']],
    ['api_key[x]junk', ['api_key']],
    ['api_key[]x', ['api_key']],
    ['api[key', ['api_key', 'api']],
    ['a.b[c', ['a_b_c', 'a.b']],
    ['', ['']],
  ];
  for (const [name, want] of cases) t.same(readings(name), want, JSON.stringify(name));
});

t.test('foldedNames splits on & and ;, and decodes names', async (t) => {
  const cases: Array<[string, string[]]> = [
    ['', []],
    ['?', []],
    ['?a=1&b=2', ['a', 'b']],
    ['a=1;B=2', ['a', 'b']],
    ['?x=1;api_key=s&&y', ['x', 'api_key', 'y']],
    ['?api%5Fkey=1&%20API.KEY=2', ['api_key', 'api_key', 'api.key']],
    ['?api+key=1', ['api_key', 'api key']],
    ['?bad%zzname=1', ['bad%zzname']],
    ['?%5Bk%5D=1', ['_k]', 'k']],
    ['?q=a%26api_key%3D1', ['q']],
  ];
  for (const [query, want] of cases) t.same(foldedNames(query), want, query);
});

t.test('formDecode decodes like a form, null on bad percent-encoding', async (t) => {
  t.equal(formDecode('a+b%2Bc'), 'a b+c');
  t.equal(formDecode('plain'), 'plain');
  t.equal(formDecode('%zz'), null);
  t.equal(formDecode('%E0%A4%A'), null);
});

t.test('decodeName decodes what it can, as PHP does, when strict decoding fails', async (t) => {
  const cases: Array<[string, string]> = [
    ['api%5Fkey', 'api_key'],
    ['api_key%00%ZZ', 'api_key\0%ZZ'],
    ['+api%5Fkey%FF', ' api_key\xff'],
    ['%ZZ', '%ZZ'],
    ['a+b', 'a b'],
  ];
  for (const [raw, want] of cases) t.equal(decodeName(raw), want, raw);
  t.same(readings(decodeName('+api_key%00%ZZ')), ['api_key']);
  t.same(readings(decodeName('api%5Fkey[%ZZ]')), ['api_key']);
});

t.test('hasMethodOverride finds _method in any spelling', async (t) => {
  const yes = ['?_method%00%ZZ=PUT', '?%5Fmethod%00%FF=PUT', '?+_method%00%ZZ=PUT', '?_method%00=DELETE', '?%5B_method%5D=x', '?_method]=x', '?_method[x]y=1', '?a=1&_METHOD=put', '?%5Fmethod=DELETE', '?%5fMethod=x', '?.method=DELETE', '?[method=DELETE', '?a=1;_method=PUT', '?_method[]=x', '?%20_method=x', '?_method'];
  const no = ['', '?', '?method=DELETE', '?x_method=1', '?q=_method', '?a=%41', '?methods=1', '?_methods=1'];
  for (const q of yes) t.ok(hasMethodOverride(q), q);
  for (const q of no) t.notOk(hasMethodOverride(q), q);
});

t.test('a long hostile query is read in linear time', async (t) => {
  // Quadratic scans over 1 MB would run for minutes and fail the file on its timeout.
  const big = `?${'a;'.repeat(1 << 19)}`;
  t.notOk(hasMethodOverride(`${big}%`));
  t.equal(foldedNames(big).length, 1 << 19);
});
