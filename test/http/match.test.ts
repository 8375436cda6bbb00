import t from 'tap';
import { compileRoutes, findShadowedRoutes, foldCase, hasDotLikeSegment, hostName, matchPath, matchRoute, splitPath } from '../../src/http/match.js';
import type { RouteConfig } from '../../src/config/schema.js';

function r(path: string, extra: Partial<RouteConfig['match']> = {}): RouteConfig {
  return { match: { path, ...extra }, public: false, scopes: [], auth: ['jwt', 'apiKey'], rateLimit: [], upstream: 'api' };
}
const ranks = new Map([['basic', 0], ['admin', 1]]);

t.test('splitPath', async (t) => {
  const cases: Array<[string, string[]]> = [['/', []], ['/a', ['a']], ['/a/', ['a']], ['/a/b', ['a', 'b']], ['/a/b/', ['a', 'b']]];
  for (const [p, want] of cases) t.same(splitPath(p), want, p);
});

t.test('hostName', async (t) => {
  const cases: Array<[string | undefined, string | undefined]> = [['Example.COM:8080', 'example.com'], ['[::1]:80', '[::1]'], ['a.b', 'a.b'], [undefined, undefined]];
  for (const [h, want] of cases) t.equal(hostName(h), want, String(h));
});

t.test('matching table', async (t) => {
  const routes = compileRoutes(
    [
      r('/health', { methods: ['GET'] }),
      r('/admin/**'),
      r('/films/*/reviews', { methods: ['POST'] }),
      r('/tenant', { host: '*.example.com' }),
      r('/exact', { host: 'api.example.com' }),
      r('/**'),
    ],
    ranks,
  );
  // [method, host, path, expected route index]
  const cases: Array<[string, string | undefined, string, number | undefined]> = [
    ['GET', undefined, '/health', 0],
    ['HEAD', undefined, '/health', 0],
    ['POST', undefined, '/health', 5],
    ['GET', undefined, '/health/', 0],
    ['GET', undefined, '/healthz', 5],
    ['GET', undefined, '/admin', 1],
    ['GET', undefined, '/admin/', 1],
    ['GET', undefined, '/admin/users/1', 1],
    ['GET', undefined, '/administrator', 5],
    ['GET', undefined, '/ADMIN', 5],
    ['POST', undefined, '/films/1/reviews', 2],
    ['POST', undefined, '/films/1/reviews/', 2],
    ['GET', undefined, '/films/1/reviews', 5],
    ['POST', undefined, '/films/reviews', 5],
    ['POST', undefined, '/films/1/2/reviews', 5],
    ['GET', 'a.example.com', '/tenant', 3],
    ['GET', 'example.com', '/tenant', 5],
    ['GET', 'evil-example.com', '/tenant', 5],
    ['GET', 'api.example.com', '/exact', 4],
    ['GET', 'api.example.com.evil', '/exact', 5],
    ['GET', undefined, '/', 5],
  ];
  for (const [method, host, path, want] of cases) {
    t.equal(matchRoute(routes, method, host, splitPath(path))?.index, want, `${method} ${host ?? ''}${path}`);
  }
  const none = compileRoutes([r('/only')], ranks);
  t.equal(matchRoute(none, 'GET', undefined, splitPath('/other')), undefined, 'no match → undefined (deny by default)');
});

t.test('shadow detection', async (t) => {
  const cases: Array<[string, RouteConfig[], Array<{ index: number; by: number }>]> = [
    ['catch-all first', [r('/**'), r('/a')], [{ index: 1, by: 0 }]],
    ['prefix covers', [r('/a/**'), r('/a/b/c')], [{ index: 1, by: 0 }]],
    ['star covers literal', [r('/*/x'), r('/a/x')], [{ index: 1, by: 0 }]],
    ['literal does not cover star', [r('/a/x'), r('/*/x')], []],
    ['methods narrower do not cover', [r('/a', { methods: ['GET'] }), r('/a')], []],
    ['methods wider cover', [r('/a'), r('/a', { methods: ['GET'] })], [{ index: 1, by: 0 }]],
    ['host-specific does not cover any-host', [r('/a', { host: 'x.com' }), r('/a')], []],
    ['star does not cover double star', [r('/a/*'), r('/a/**')], []],
    ['double star covers zero segments', [r('/a/**'), r('/a')], [{ index: 1, by: 0 }]],
  ];
  for (const [name, cfg, want] of cases) t.same(findShadowedRoutes(compileRoutes(cfg, ranks)), want, name);
});

t.test('a path whose letter case picks the route has no one reading', async (t) => {
  const routes = compileRoutes([r('/public/**'), r('/admin/**'), r('/Reports/*'), r('/**')], ranks);
  // [path, expected route index, or 'case']
  const cases: Array<[string, number | 'case' | undefined]> = [
    ['/admin/x', 1], ['/admin/X', 1], ['/ADMIN/x', 'case'], ['/Admin', 'case'], ['/PUBLIC/x', 'case'], ['/public/X', 0],
    ['/files/ABC', 3], ['/Reports/q3', 2], ['/reports/q3', 'case'], ['/REPORTS/q3', 'case'], ['/Reports/q3/more', 3],
    ['/adm%C4%B1n/x', 'case'], ['/adm%C4%B0n/x', 'case'], ['/%C3%A9', 3],
    // Trailing dots and spaces of a segment, which IIS and trimming matchers drop.
    ['/admin./x', 'case'], ['/admin%20/x', 'case'], ['/admin.%20./x', 'case'], ['/admin...', 'case'], ['/public./x', 'case'],
    ['/admin/x.', 1], ['/files/a.b', 3], ['/files/a.', 3], ['/v1.2/x', 3], ['/.well-known/x', 3],
    // Leading spaces (Spring's trimming) and `;` parameters (Tomcat, Jetty) of a segment.
    ['/%20admin/x', 'case'], ['/admin;p/x', 'case'], ['/admin%3Bp/x', 'case'], ['/files;v=1/x', 3], ['/a%20b/x', 3],
    // A segment trimmed to nothing is no segment (Spring ignores empty tokens).
    ['/%20/admin/x', 'case'], ['/public/%20/x', 0], ['/admin/%20', 1],
  ];
  for (const [path, want] of cases) {
    const got = matchPath(routes, 'GET', undefined, path);
    t.equal(got === 'case' || got === undefined ? got : got.index, want, path);
  }
  const lower = compileRoutes([r('/admin/**')], ranks);
  t.equal(matchPath(lower, 'GET', undefined, '/other'), undefined, 'no route either way: undefined');
  t.equal(matchPath(lower, 'GET', undefined, '/ADMIN'), 'case', 'no route as sent, a route in lower case: ambiguous');
  const folds: Array<[string, string]> = [['/ADMIN', '/admin'], ['/adm%C4%B1n', '/admin'], ['/%C5%BFet', '/set'], ['/%E2%84%AAey', '/key'], ['/%C3%A9', '/%c3%a9'], ['/Admin./x%20', '/admin/x'], ['/a.b./c', '/a.b/c'], ['/.well-known', '/.well-known'], ['/%20A%20/b.', '/a/b'], ['/a%20b/c', '/a%20b/c'], ['/x;P=1/y%3B2', '/x/y'], ['/%20/a', '/a'], ['/a/%20/', '/a'], ['/.', '/'], ['/', '/']];
  for (const [p, want] of folds) t.equal(foldCase(p), want, `foldCase(${p})`);
});

t.test('foldCase is linear in the path, whatever it holds', async (t) => {
  // A quadratic fold over 1 MB would run for minutes and fail the file on its timeout.
  const dots = '.'.repeat(1 << 20);
  t.equal(foldCase(`/public/${dots}x./y`), `/public/${dots}x/y`);
  t.equal(foldCase(`/A${'%20'.repeat(1 << 18)}/b`), '/a/b');
});

t.test('hasDotLikeSegment: segments of dots and spaces, which Windows may read as . or ..', async (t) => {
  const yes = ['/...', '/x/../admin', '/x/..%20/admin', '/x/.%20/y', '/x/%20./y', '/a/....', '/a/%20..%20'];
  const no = ['/', '/a.b', '/.well-known/x', '/a/..b', '/a/b..', '/v1.2/x', '/a/%20', '/a/%20%20/b', '/files/report.', '/x/a../y.txt'];
  for (const p of yes) t.ok(hasDotLikeSegment(p), p);
  for (const p of no) t.notOk(hasDotLikeSegment(p), p);
  t.ok(hasDotLikeSegment(`/a/${'.%20'.repeat(1 << 18)}/b`), 'a 768 KB segment, in linear time');
});
