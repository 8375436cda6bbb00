import t from 'tap';
import { readFileSync } from 'node:fs';
import { configJsonSchema } from '../../src/config/schema.js';

t.test('gateway.config.schema.json is generated from the schema', async (t) => {
  const onDisk = JSON.parse(readFileSync('gateway.config.schema.json', 'utf8'));
  t.same(onDisk, configJsonSchema(), 'run `npm run build && npm run schema` after changing src/config/schema.ts');
});

t.test('the JSON Schema knows every top-level key and forbids others', async (t) => {
  const s = configJsonSchema() as { properties: Record<string, unknown>; additionalProperties: unknown; required: string[] };
  t.same(Object.keys(s.properties).sort(), ['admin', 'allowPathParams', 'apiKeys', 'identity', 'jwt', 'listen', 'log', 'rateLimits', 'revocation', 'roles', 'routes', 'shutdown', 'store', 'tracing', 'trustedProxies', 'upstreams', 'workers']);
  t.equal(s.additionalProperties, false);
  t.same(s.required.sort(), ['routes', 'upstreams']);
});
