/** What a `revocation.externalKeys` template can name of one token. */
export interface ExternalKeyValues {
  /** The JWT exactly as the client sent it. */
  readonly token: string;
  /** Lowercase hex SHA-256 of `token`. */
  readonly sha256: string;
  /** The `jti` and `sub` claims as text; undefined when the token has none usable. */
  readonly jti: string | undefined;
  readonly sub: string | undefined;
}

/** Renders the Redis keys whose existence revokes one token; undefined when none applies. */
export type ExternalKeys = (values: ExternalKeyValues) => readonly string[] | undefined;

const PLACEHOLDER = /(\{(?:token|jti|sub|sha256)\})/;

/**
 * Compiles the templates of `revocation.externalKeys` (validated by the config schema) once,
 * so rendering a token's keys is string concatenation. A template naming a claim the token
 * lacks is skipped: `{jti}` cannot say anything about a token without a `jti`.
 */
export function compileExternalKeys(templates: readonly string[]): ExternalKeys | undefined {
  if (templates.length === 0) return undefined;
  // split with a capturing group alternates literal text (even) and placeholders (odd).
  const compiled = templates.map((t) => t.split(PLACEHOLDER).map((part, i) => (i % 2 === 1 ? (part.slice(1, -1) as keyof ExternalKeyValues) : part)));
  return (values) => {
    const keys: string[] = [];
    next: for (const parts of compiled) {
      let key = '';
      for (let i = 0; i < parts.length; i++) {
        if (i % 2 === 0) {
          key += parts[i]!;
          continue;
        }
        const value = values[parts[i] as keyof ExternalKeyValues];
        if (value === undefined || value === '') continue next;
        key += value;
      }
      keys.push(key);
    }
    return keys.length === 0 ? undefined : keys;
  };
}
