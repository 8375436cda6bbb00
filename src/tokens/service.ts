import type { Clock } from '../clock.js';
import { systemClock } from '../clock.js';
import { formatRevocationId, formatScopedSubject, parseRevocationId, tokenRecordId } from '../revocation/ids.js';
import type { RevocationLog } from '../store/types.js';
import { DomainError } from '../http/problem.js';

/** What revoking a JWT tells the fleet. */
export interface TokenRevocationSink {
  revoke(revocationId: string, until: number | undefined): Promise<void>;
  revokeSubject(subject: string, before: number, until?: number): Promise<void>;
}

/** A token revocation refused for its input (answered 400 `invalid-argument`). */
export class TokenServiceError extends DomainError {
  override readonly name = 'TokenServiceError';
  readonly code = 'invalid-argument';
}

/**
 * JWT revocations (`tokens revoke`, logout): durable in the store, then published to the
 * revocation view. JWT revocation ids are `jti:<jti>` or `tok:<sha256 hex of the token>`.
 */
export class TokenService {
  private readonly store: Pick<RevocationLog, 'insertTokenRevocation' | 'insertSubjectRevocation'>;
  private readonly sink: TokenRevocationSink;
  private readonly clock: Clock;
  constructor(
    store: Pick<RevocationLog, 'insertTokenRevocation' | 'insertSubjectRevocation'>,
    sink: TokenRevocationSink,
    clock: Clock = systemClock,
  ) {
    this.store = store;
    this.sink = sink;
    this.clock = clock;
  }

  /** Revokes one JWT by `jti` (until `until`, ms; unbounded when omitted). */
  async revokeJti(jti: string, until?: number): Promise<{ revocationId: string; until: number | null }> {
    if (jti === '' || jti.length > 1024) throw new TokenServiceError('jti must be 1–1024 characters');
    return this.revokeId(formatRevocationId({ kind: 'jti', jti }), until);
  }

  /** Revokes one credential given its revocation id (`jti:…` or `tok:…`). */
  async revokeId(revocationId: string, until?: number): Promise<{ revocationId: string; until: number | null }> {
    const parsed = parseRevocationId(revocationId);
    if (parsed?.kind !== 'jti' && parsed?.kind !== 'token') throw new TypeError(`not a JWT revocation id: ${revocationId}`);
    const now = this.clock.now();
    await this.store.insertTokenRevocation({ id: tokenRecordId(parsed), issuer: '', until: until ?? null, createdAt: now });
    await this.sink.revoke(revocationId, until);
    return { revocationId, until: until ?? null };
  }

  /** Revokes every JWT of `subject` issued before now. */
  async revokeSubject(subject: string): Promise<{ subject: string; revokedBefore: number }> {
    if (subject === '') throw new TokenServiceError('subject must not be empty');
    const now = this.clock.now();
    // JWT `iat` has one-second resolution: a token issued within this second is covered too.
    const before = Math.ceil((now + 1) / 1000) * 1000;
    await this.store.insertSubjectRevocation({ subject, scope: 'tokens', revokedBefore: before, at: now });
    await this.sink.revokeSubject(formatScopedSubject('tokens', subject), before);
    return { subject, revokedBefore: before };
  }
}
