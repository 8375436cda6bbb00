import { explainJwt } from '../authn/jwt/explain.js';
import { ApiKeyAuthenticator } from '../authn/api-key/authenticator.js';
import { roleRank } from '../config/load.js';
import { GatewayError } from '../http/problem.js';
import { openStore } from '../store/open.js';
import type { KeyStore } from '../store/types.js';
import type { VerifierFactory } from './explain.js';

/**
 * Real verification for `explain --token/--key`: the JWT with the configured issuers (every
 * check listed), the key against the store (which must not be held by a running gateway),
 * and the usage credits its lineage has left.
 */
export const explainVerifiers: VerifierFactory = async (config) => {
  let store: KeyStore | undefined;
  let apiKey: ApiKeyAuthenticator | undefined;
  const rankOf = (r: string) => roleRank(config, r);
  return {
    verify: async (_rt, credential, steps) => {
      if (credential.kind === 'jwt') {
        const e = await explainJwt(credential.value, config.jwt, undefined, { rankOf });
        for (const c of e.checks) steps.push({ step: c.check, ok: c.ok, detail: c.detail });
        if (e.decision === 'reject' || e.identity === undefined) throw new GatewayError(e.code ?? 'token-invalid', e.detail ?? 'The token was rejected.');
        return e.identity;
      }
      store = await openStore(config.store.url, { migrate: true });
      apiKey = new ApiKeyAuthenticator(store, config.apiKeys, rankOf);
      const identity = await apiKey.authenticate({ ...credential, source: 'explain' }, { clientIp: '127.0.0.1' });
      steps.push({ step: 'key', ok: true, detail: `key ${identity.keyId} of ${identity.subject}, role "${identity.role}"${identity.scopes.length ? `, scopes ${identity.scopes.join(' ')}` : ''}` });
      return identity;
    },
    // The lineage's credits as `keys list` shows them: read now, none spent.
    credits: async (identity) => (store === undefined || identity.keyId === undefined ? null : ((await store.getKey(identity.keyId))?.remaining ?? null)),
    close: async () => {
      await apiKey?.close();
      await store?.close();
    },
  };
};
