import t from 'tap';
import { compileRoutes, findShadowedRoutes, hostName, matchRoute, splitPath } from '../../src/http/match.js';
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
