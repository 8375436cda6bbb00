/**
 * What the service tells the revocation layer after a revocation is durably stored:
 * - `key`: one key stopped working (`reason` says why);
 * - `change`: one key's grants or end changed; it may still be working;
 * - `subject`: every key of the subject created before `revokedBefore` is revoked
 *   (`keys revoke --subject`); `keyIds` are the keys this revoked.
 */
export type KeyRevocationEvent =
  | {
      readonly kind: 'key';
      readonly keyId: string;
      /** The Identity's `revocationId`: `key:<id>` or `legacy:<sha256>`. */
      readonly revocationId: string;
      readonly subject: string;
      readonly at: number;
      /** When the key would have stopped working anyway (null: never); a marker can expire then. */
      readonly expiresAt: number | null;
      readonly reason: 'revoke' | 'replace' | 'rotate' | 'refresh' | 'family';
    }
  | {
      /** A key's record changed without a revocation (rotation grace, update): caches must re-read it. */
      readonly kind: 'change';
      readonly keyId: string;
      readonly revocationId: string;
      readonly subject: string;
      readonly at: number;
      readonly reason: 'rotate' | 'update';
    }
  | {
      readonly kind: 'subject';
      readonly subject: string;
      readonly revokedBefore: number;
      readonly at: number;
      readonly keyIds: readonly string[];
      readonly revocationIds: readonly string[];
    };
