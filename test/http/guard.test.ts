import t from 'tap';
import { checkAmbiguity, guardOptionsFromConfig, type GuardOptions } from '../../src/http/guard.js';
import { configSchema } from '../../src/config/schema.js';

const opts: GuardOptions = {
  identityHeaders: new Set(['x-auth-subject', 'x-auth-role', 'x-auth-scopes', 'x-auth-key-id', 'x-auth-method', 'x-user-assertion']),
  identityPrefixes: ['x-auth-'],
  credentialHeaders: new Set(['authorization', 'x-api-key']),
  maxCredentialBytes: 64,
};

const H = ['Host', 'api.example'];
type Case = [name: string, rawHeaders: string[], want: RegExp | null];

const cases: Case[] = [
  ['minimal request', [...H], null],
  ['chunked body', [...H, 'Transfer-Encoding', 'chunked'], null],
  ['chunked, any case and padding', [...H, 'transfer-encoding', ' Chunked '], null],
  ['content-length body', [...H, 'Content-Length', '12'], null],
  ['repeated ordinary header', [...H, 'Accept', 'a', 'accept', 'b'], null],
  ['authorization and key header together (extraction decides)', [...H, 'Authorization', 'Bearer x', 'X-Api-Key', 'y'], null],
  ['credential at the limit', [...H, 'x-api-key', 'k'.repeat(64)], null],
  ['large non-credential header', [...H, 'Cookie', 'c'.repeat(1000)], null],
  ['underscore header the gateway does not manage', [...H, 'x_correlation_id', 'c1'], null],
  ['underscore header that only looks like a managed one', [...H, 'x_forwarded', '1.2.3.4', 'x_host_name', 'h'], null],
  ['our identity header with dashes (stripped later, not refused)', [...H, 'X-Auth-Subject', 'alice'], null],
  ['missing Host', ['Accept', '*/*'], /missing Host/],
  ['no headers at all', [], /missing Host/],
  ['duplicate Host', [...H, 'Host', 'evil.example'], /duplicate Host/],
  ['duplicate Host, different case', ['Host', 'a', 'hOST', 'b'], /duplicate Host/],
  ['duplicate Host, same value', ['host', 'a', 'host', 'a'], /duplicate Host/],
  ['duplicate Authorization', [...H, 'Authorization', 'Bearer a', 'Authorization', 'Bearer b'], /duplicate Authorization/],
  ['duplicate Authorization, different case', [...H, 'authorization', 'Bearer a', 'AUTHORIZATION', 'Bearer a'], /duplicate Authorization/],
  ['duplicate Content-Length', [...H, 'Content-Length', '5', 'content-length', '5'], /duplicate Content-Length/],
  ['Transfer-Encoding gzip, chunked', [...H, 'Transfer-Encoding', 'gzip, chunked'], /Transfer-Encoding/],
  ['Transfer-Encoding chunked, chunked', [...H, 'Transfer-Encoding', 'chunked, chunked'], /Transfer-Encoding/],
  ['Transfer-Encoding xchunked', [...H, 'Transfer-Encoding', 'xchunked'], /Transfer-Encoding/],
  ['Transfer-Encoding chunked-false', [...H, 'Transfer-Encoding', 'chunked-false'], /Transfer-Encoding/],
  ['Transfer-Encoding empty', [...H, 'Transfer-Encoding', ''], /Transfer-Encoding/],
  ['Transfer-Encoding identity', [...H, 'Transfer-Encoding', 'identity'], /Transfer-Encoding/],
  ['chunked with tab padding', [...H, 'Transfer-Encoding', '\tchunked\t'], null],
  ['Transfer-Encoding with non-breaking space', [...H, 'Transfer-Encoding', 'chunked\u00a0'], /Transfer-Encoding/],
  ['Transfer-Encoding with vertical tab', [...H, 'Transfer-Encoding', 'chunked\u000b'], /Transfer-Encoding/],
  ['two Transfer-Encoding headers', [...H, 'Transfer-Encoding', 'chunked', 'transfer-encoding', 'chunked'], /more than one Transfer-Encoding/],
  ['Content-Length and Transfer-Encoding', [...H, 'Content-Length', '3', 'Transfer-Encoding', 'chunked'], /both Content-Length and Transfer-Encoding/],
  ['Transfer-Encoding then Content-Length', [...H, 'Transfer-Encoding', 'chunked', 'Content-Length', '3'], /both Content-Length and Transfer-Encoding/],
  ['x_auth_subject', [...H, 'x_auth_subject', 'admin'], /identity namespace/],
  ['X-Auth_Role', [...H, 'X-Auth_Role', 'admin'], /identity namespace/],
  ['X_AUTH_SCOPES', [...H, 'X_AUTH_SCOPES', 'all'], /identity namespace/],
  ['prefix with underscores, unknown suffix', [...H, 'x_auth_tenant', 't1'], /identity namespace/],
  ['identity header outside the prefix, with underscores', [...H, 'x_user_assertion', 'forged'], /identity namespace/],
  ['key header with underscores', [...H, 'x_api_key', 'k'], /credential header name written with "_"/],
  ['x_forwarded_for (a managed header with "_")', [...H, 'x_forwarded_for', 'v'], /written with "_" for x-forwarded-for,/],
  ['X_Forwarded_Host (a managed header with "_")', [...H, 'X_Forwarded_Host', 'v'], /written with "_" for x-forwarded-host,/],
  ['x-forwarded_proto (a managed header with "_")', [...H, 'x-forwarded_proto', 'v'], /written with "_" for x-forwarded-proto,/],
  ['X_Forwarded_Prefix (a managed header with "_")', [...H, 'X_Forwarded_Prefix', 'v'], /written with "_" for x-forwarded-prefix,/],
  ['x_real_ip (a managed header with "_")', [...H, 'x_real_ip', 'v'], /written with "_" for x-real-ip,/],
  ['X_Original_URL (a managed header with "_")', [...H, 'X_Original_URL', 'v'], /written with "_" for x-original-url,/],
  ['x_rewrite_url (a managed header with "_")', [...H, 'x_rewrite_url', 'v'], /written with "_" for x-rewrite-url,/],
  ['X_Original_URI (a managed header with "_")', [...H, 'X_Original_URI', 'v'], /written with "_" for x-original-uri,/],
  ['x_forwarded_path (a managed header with "_")', [...H, 'x_forwarded_path', 'v'], /written with "_" for x-forwarded-path,/],
  ['X_HTTP_Method_Override (a managed header with "_")', [...H, 'X_HTTP_Method_Override', 'v'], /written with "_" for x-http-method-override,/],
  ['x_http_method (a managed header with "_")', [...H, 'x_http_method', 'v'], /written with "_" for x-http-method,/],
  ['X_Method_Override (a managed header with "_")', [...H, 'X_Method_Override', 'v'], /written with "_" for x-method-override,/],
  ['true_client_ip (a managed header with "_")', [...H, 'true_client_ip', 'v'], /written with "_" for true-client-ip,/],
  ['CF_Connecting_IP (a managed header with "_")', [...H, 'CF_Connecting_IP', 'v'], /written with "_" for cf-connecting-ip,/],
  ['x_client_ip (a managed header with "_")', [...H, 'x_client_ip', 'v'], /written with "_" for x-client-ip,/],
  ['client_ip (a managed header with "_")', [...H, 'client_ip', 'v'], /written with "_" for client-ip,/],
  ['x_cluster_client_ip (a managed header with "_")', [...H, 'x_cluster_client_ip', 'v'], /written with "_" for x-cluster-client-ip,/],
  ['x_host (a managed header with "_")', [...H, 'x_host', 'v'], /written with "_" for x-host,/],
  ['X_Request_Id (a managed header with "_")', [...H, 'X_Request_Id', 'v'], /written with "_" for x-request-id,/],
  ['content_length (a managed header with "_")', [...H, 'content_length', 'v'], /written with "_" for content-length,/],
  ['Transfer_Encoding (a managed header with "_")', [...H, 'Transfer_Encoding', 'v'], /written with "_" for transfer-encoding,/],
  ['proxy_authorization (a managed header with "_")', [...H, 'proxy_authorization', 'v'], /written with "_" for proxy-authorization,/],
  ['keep_alive (a managed header with "_")', [...H, 'keep_alive', 'v'], /written with "_" for keep-alive,/],
  ['x_envoy_original_path (a managed header with "_")', [...H, 'x_envoy_original_path', 'v'], /written with "_" for x-envoy-original-path,/],
  ['duplicate key header', [...H, 'x-api-key', 'a', 'x-api-key', 'b'], /duplicate credential header/],
  ['duplicate key header, different case', [...H, 'X-Api-Key', 'a', 'x-api-key', 'a'], /duplicate credential header/],
  ['oversized key header', [...H, 'x-api-key', 'k'.repeat(65)], /too large/],
  ['oversized Authorization', [...H, 'Authorization', 'Bearer ' + 't'.repeat(60)], /too large/],
];

for (const [name, raw, want] of cases) {
  t.test(name, async (t) => {
    const got = checkAmbiguity(raw, opts);
    if (want === null) t.equal(got, null, 'accepted');
    else t.match(got ?? '', want, 'refused for the right reason');
  });
}

t.test('options from the config', async (t) => {
  const config = configSchema.parse({
    upstreams: { api: { url: 'http://127.0.0.1:3000' } },
    apiKeys: { headers: ['x-api-key', 'x-legacy-token'] },
    identity: { assertion: { header: 'x-gw-assertion' }, namespace: ['x-auth-'] },
    routes: [{ match: { path: '/**' }, upstream: 'api' }],
  });
  const o = guardOptionsFromConfig(config);
  t.same([...o.credentialHeaders].sort(), ['authorization', 'x-api-key', 'x-legacy-token']);
  t.ok(o.identityHeaders.has('x-auth-subject') && o.identityHeaders.has('x-auth-key-id'), 'identity headers');
  t.ok(o.identityHeaders.has('x-gw-assertion'), 'assertion header');
  t.same(o.identityPrefixes, ['x-auth-']);
  t.equal(o.maxCredentialBytes, 8192, 'docs/reference/request-pipeline.md: 8 KiB');
  t.match(checkAmbiguity([...H, 'X_GW_Assertion', 'forged'], o), /identity namespace/);
  t.match(checkAmbiguity([...H, 'x-legacy-token', 'a', 'X-Legacy-Token', 'b'], o), /duplicate credential/);
  t.equal(checkAmbiguity([...H, 'x-legacy-token', 'k'.repeat(8192)], o), null);
  t.match(checkAmbiguity([...H, 'x-legacy-token', 'k'.repeat(8193)], o), /too large/);
});
