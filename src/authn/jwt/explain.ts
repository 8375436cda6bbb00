import type { Clock } from '../../clock.js';
import { systemClock } from '../../clock.js';
import type { JwtConfig } from '../../config/schema.js';
import { JwtAuthenticator, type JwtAuthenticatorOptions } from './authenticator.js';
import type { JwtExplanation } from './trace.js';

export type { JwtCheckResult, JwtExplanation } from './trace.js';

/**
 * `portcullis explain --token`: verifies a token against `config` without a running
 * gateway (fetching a JWKS if the token's issuer uses one) and lists every check.
 */
export async function explainJwt(
  token: string,
  config: JwtConfig,
  clock: Clock = systemClock,
  options: JwtAuthenticatorOptions & { readonly rankOf?: ((role: string) => number) | undefined } = {},
): Promise<JwtExplanation> {
  const authenticator = new JwtAuthenticator(config, options.rankOf ?? (() => -1), clock, options);
  try {
    return await authenticator.explain(token);
  } finally {
    authenticator.close();
  }
}
