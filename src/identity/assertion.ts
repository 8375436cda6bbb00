import { SignJWT, calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, importPKCS8, type CryptoKey, type JWK } from 'jose';
import type { Identity } from '../authn/types.js';
import { systemClock, type Clock } from '../clock.js';

/** Value of the `iss` claim of every assertion. */
export const ASSERTION_ISSUER = 'portcullis';
/** Name of the shared key-value entry holding the generated signing key (a private JWK). */
export const ASSERTION_KEY_NAME = 'assertion-key';

export type AssertionKeyErrorCode = 'assertion-key-invalid' | 'assertion-key-unavailable';

/** The signing key could not be configured (bad key material) or loaded (store unreachable). */
export class AssertionKeyError extends Error {
  override readonly name = 'AssertionKeyError';
  readonly code: AssertionKeyErrorCode;
  constructor(code: AssertionKeyErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/**
 * Where a generated signing key is kept so restarts and every instance sharing the store
 * sign with the same key. `setIfAbsent` (insert unless present, return what is stored)
 * closes the race between instances starting at once; without it the key is written with
 * `set` and read back.
 */
export interface AssertionKeyStore {
  get(name: string): Promise<string | undefined>;
  set(name: string, value: string): Promise<void>;
  setIfAbsent?(name: string, value: string): Promise<string>;
}

export interface AssertionSignerOptions {
  /** Lifetime of an assertion in milliseconds (never beyond the credential's own expiry). */
  ttlMs: number;
  /** Ed25519 private key: PEM (PKCS#8) or a private JWK as JSON. Takes precedence over `kv`. */
  privateKey?: string | undefined;
  /** Shared store for a generated key; without it and without `privateKey`, a per-process key. */
  kv?: AssertionKeyStore | undefined;
  clock?: Clock | undefined;
}

/** The public half of the signing key, as served at `/.well-known/jwks.json`. */
export interface AssertionJwks {
  keys: JWK[];
}

/** Claims of an assertion, for upstreams and tests. */
export interface AssertionClaims {
  iss: typeof ASSERTION_ISSUER;
  sub: string;
  aud: string;
  role: string;
  /** Space-separated, like the scopes header. */
  scopes: string;
  /** Authentication method (RFC 8176 `amr`): `["jwt"]` or `["apiKey"]`. */
  amr: [Identity['method']];
  key_id?: string;
  iat: number;
  exp: number;
}

interface Cached {
  token: string | Promise<string>;
  /** Re-sign from this instant (ms): half the assertion's lifetime has passed. */
  renewAt: number;
}

function isEd25519Private(jwk: JWK): boolean {
  return jwk.kty === 'OKP' && jwk.crv === 'Ed25519' && typeof jwk.x === 'string' && typeof jwk.d === 'string';
}

async function privateJwkFrom(material: string, origin: string): Promise<JWK> {
  const text = material.trim();
  if (text.startsWith('{')) {
    let jwk: JWK;
    try {
      jwk = JSON.parse(text) as JWK;
    } catch (err) {
      throw new AssertionKeyError('assertion-key-invalid', `${origin}: not valid JSON.`, { cause: err });
    }
    if (!isEd25519Private(jwk)) throw new AssertionKeyError('assertion-key-invalid', `${origin}: expected an Ed25519 private JWK (kty OKP, crv Ed25519, x and d).`);
    return { kty: 'OKP', crv: 'Ed25519', x: jwk.x, d: jwk.d };
  }
  // PEM from an environment variable often arrives with its newlines escaped.
  const pem = text.includes('\n') ? text : text.replace(/\\n/g, '\n');
  if (!pem.startsWith('-----BEGIN PRIVATE KEY-----')) {
    throw new AssertionKeyError('assertion-key-invalid', `${origin}: expected a PKCS#8 PEM (-----BEGIN PRIVATE KEY-----) or a private JWK.`);
  }
  try {
    const jwk = await exportJWK(await importPKCS8(pem, 'EdDSA', { extractable: true }));
    if (!isEd25519Private(jwk)) throw new Error(`not an Ed25519 key (${jwk.kty}/${jwk.crv})`);
    return { kty: 'OKP', crv: 'Ed25519', x: jwk.x, d: jwk.d };
  } catch (err) {
    throw new AssertionKeyError('assertion-key-invalid', `${origin}: not an Ed25519 PKCS#8 private key.`, { cause: err });
  }
}

async function generatedJwk(): Promise<JWK> {
  const { privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
  const jwk = await exportJWK(privateKey);
  return { kty: 'OKP', crv: 'Ed25519', x: jwk.x, d: jwk.d };
}

async function storedJwk(kv: AssertionKeyStore): Promise<{ jwk: JWK; source: 'stored' | 'generated' }> {
  let existing: string | undefined;
  try {
    existing = await kv.get(ASSERTION_KEY_NAME);
  } catch (err) {
    throw new AssertionKeyError('assertion-key-unavailable', 'The assertion signing key could not be read from the store.', { cause: err });
  }
  if (existing !== undefined) return { jwk: await privateJwkFrom(existing, `store entry ${ASSERTION_KEY_NAME}`), source: 'stored' };
  const fresh = JSON.stringify(await generatedJwk());
  let stored: string;
  try {
    if (kv.setIfAbsent) stored = await kv.setIfAbsent(ASSERTION_KEY_NAME, fresh);
    else {
      await kv.set(ASSERTION_KEY_NAME, fresh);
      stored = (await kv.get(ASSERTION_KEY_NAME)) ?? fresh;
    }
  } catch (err) {
    throw new AssertionKeyError('assertion-key-unavailable', 'The assertion signing key could not be written to the store.', { cause: err });
  }
  // Another instance may have stored its key first: everyone signs with the stored one.
  return { jwk: await privateJwkFrom(stored, `store entry ${ASSERTION_KEY_NAME}`), source: stored === fresh ? 'generated' : 'stored' };
}

/**
 * Signs identity assertions for upstreams: an EdDSA (Ed25519) JWT per identity and upstream,
 * reused while more than half of its lifetime remains so that most requests get a string
 * back synchronously. Create with `AssertionSigner.create`.
 */
export class AssertionSigner {
  /** Key id: RFC 7638 thumbprint of the public key; the `kid` header of every assertion. */
  readonly kid: string;
  /** Where the key came from: configured, read from the store, generated and stored, or per process. */
  readonly source: 'configured' | 'stored' | 'generated' | 'ephemeral';
  private readonly publicJwk: JWK;
  private readonly cache = new WeakMap<Identity, Map<string, Cached>>();

  private readonly key: CryptoKey;
  private readonly ttlMs: number;
  private readonly clock: Clock;
  private constructor(
    key: CryptoKey,
    publicJwk: JWK,
    kid: string,
    source: AssertionSigner['source'],
    ttlMs: number,
    clock: Clock,
  ) {
    this.key = key;
    this.ttlMs = ttlMs;
    this.clock = clock;
    this.publicJwk = Object.freeze({ ...publicJwk, kid, alg: 'EdDSA', use: 'sig' });
    this.kid = kid;
    this.source = source;
  }

  /** Loads or creates the signing key. Throws AssertionKeyError. */
  static async create(opts: AssertionSignerOptions): Promise<AssertionSigner> {
    if (!(opts.ttlMs >= 1000)) throw new AssertionKeyError('assertion-key-invalid', 'The assertion ttl must be at least 1s (JWT times are whole seconds).');
    let jwk: JWK;
    let source: AssertionSigner['source'];
    if (opts.privateKey !== undefined && opts.privateKey.trim() !== '') {
      jwk = await privateJwkFrom(opts.privateKey, 'identity.assertion.privateKey');
      source = 'configured';
    } else if (opts.kv !== undefined) {
      ({ jwk, source } = await storedJwk(opts.kv));
    } else {
      jwk = await generatedJwk();
      source = 'ephemeral';
    }
    const publicJwk: JWK = { kty: 'OKP', crv: 'Ed25519', x: jwk.x };
    const kid = await calculateJwkThumbprint(publicJwk, 'sha256');
    const key = (await importJWK({ ...jwk, alg: 'EdDSA' }, 'EdDSA')) as CryptoKey;
    return new AssertionSigner(key, publicJwk, kid, source, opts.ttlMs, opts.clock ?? systemClock);
  }

  /**
   * The assertion for `identity` at the upstream named `audience`: a string when a cached
   * one still has more than half its lifetime, else a Promise of a freshly signed one
   * (concurrent callers share it).
   */
  sign(identity: Identity, audience: string): string | Promise<string> {
    let byAudience = this.cache.get(identity);
    const now = this.clock.now();
    const hit = byAudience?.get(audience);
    if (hit !== undefined && now < hit.renewAt) return hit.token;
    if (byAudience === undefined) {
      byAudience = new Map();
      this.cache.set(identity, byAudience);
    }
    const entry: Cached = { token: '', renewAt: Infinity };
    const map = byAudience;
    entry.token = this.signNow(identity, audience, now).then(
      ({ token, exp }) => {
        entry.token = token;
        entry.renewAt = now + (exp * 1000 - now) / 2;
        return token;
      },
      (err: unknown) => {
        if (map.get(audience) === entry) map.delete(audience);
        throw err;
      },
    );
    map.set(audience, entry);
    return entry.token;
  }

  private async signNow(identity: Identity, audience: string, now: number): Promise<{ token: string; exp: number }> {
    const iat = Math.floor(now / 1000);
    const until = identity.expiresAt === undefined ? now + this.ttlMs : Math.min(now + this.ttlMs, identity.expiresAt);
    const exp = Math.max(iat, Math.floor(until / 1000));
    const claims: Record<string, unknown> = { role: identity.role, scopes: identity.scopesHeader, amr: [identity.method] };
    if (identity.keyId !== undefined) claims.key_id = identity.keyId;
    const token = await new SignJWT(claims)
      .setProtectedHeader({ alg: 'EdDSA', kid: this.kid, typ: 'JWT' })
      .setIssuer(ASSERTION_ISSUER)
      .setSubject(identity.subject)
      .setAudience(audience)
      .setIssuedAt(iat)
      .setExpirationTime(exp)
      .sign(this.key);
    return { token, exp };
  }

  /** The public key set upstreams verify assertions with (`/.well-known/jwks.json`). */
  jwks(): AssertionJwks {
    return { keys: [this.publicJwk] };
  }
}
