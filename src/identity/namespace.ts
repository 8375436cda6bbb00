/** What the namespace is derived from: config/schema's `identity` section, narrowed. */
export interface NamespaceConfig {
  readonly headers: Readonly<Record<string, string>>;
  readonly namespace: readonly string[];
  readonly assertion?: { readonly header: string } | undefined;
}

/**
 * The header names the gateway owns, derived once from the config: what the guard refuses
 * in disguise and what forwarding strips before setting the verified identity. All lowercase.
 */
export interface HeaderNamespace {
  /** The identity headers and the assertion header. */
  readonly names: ReadonlySet<string>;
  /** `identity.namespace`: any header starting with one is ours. */
  readonly prefixes: readonly string[];
  /** Headers that carry credentials: `authorization` and the API-key headers. */
  readonly credentialHeaders: ReadonlySet<string>;
}

/** The namespace of a config's `identity` section and API-key headers. */
export function headerNamespace(identity: NamespaceConfig, keyHeaders: readonly string[]): HeaderNamespace {
  const names = new Set(Object.values(identity.headers).map((n) => n.toLowerCase()));
  if (identity.assertion !== undefined) names.add(identity.assertion.header.toLowerCase());
  return {
    names,
    prefixes: identity.namespace.map((p) => p.toLowerCase()),
    credentialHeaders: new Set(['authorization', ...keyHeaders.map((h) => h.toLowerCase())]),
  };
}
