// What a Node user would assemble instead of Portcullis: fastify + @fastify/http-proxy
// (undici underneath) + @fastify/jwt (fast-jwt) doing the same HS256 check — algorithm,
// issuer, audience, expiry, a known role — and forwarding the same identity headers with
// inbound ones stripped. fast-jwt's verified-token cache is on, as Portcullis caches too.
import Fastify from 'fastify';
import fastifyJwt from '@fastify/jwt';
import proxy from '@fastify/http-proxy';

const [upstream, secret, issuer, audience, rolesCsv] = process.argv.slice(2);
const roles = new Set(rolesCsv.split(','));
const app = Fastify({ logger: false });
await app.register(fastifyJwt, {
  secret,
  verify: { algorithms: ['HS256'], allowedIss: issuer, allowedAud: audience, requiredClaims: ['exp'], cache: 100_000 },
});
await app.register(proxy, {
  upstream,
  preHandler: async (req, reply) => {
    try {
      await req.jwtVerify();
    } catch {
      return reply.code(401).header('www-authenticate', 'Bearer error="invalid_token"').send({ code: 'token-invalid' });
    }
    if (!roles.has(req.user.role)) return reply.code(403).send({ code: 'authorisation-required' });
  },
  replyOptions: {
    rewriteRequestHeaders: (req, headers) => {
      const out = {};
      for (const k in headers) if (!k.startsWith('x-auth-') && k !== 'authorization') out[k] = headers[k];
      const u = req.user;
      out['x-auth-subject'] = String(u.sub);
      out['x-auth-role'] = String(u.role);
      out['x-auth-scopes'] = typeof u.scope === 'string' ? u.scope : '';
      out['x-auth-method'] = 'jwt';
      out['x-forwarded-for'] = req.ip;
      out['x-forwarded-proto'] = 'http';
      if (headers.host !== undefined) out['x-forwarded-host'] = headers.host;
      out['x-request-id'] = String(req.id);
      return out;
    },
  },
});
const address = await app.listen({ port: 0, host: '127.0.0.1' });
process.stdout.write(JSON.stringify({ port: Number(new URL(address).port) }) + '\n');
process.on('SIGTERM', () => app.close().then(() => process.exit(0)));
