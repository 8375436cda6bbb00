import type { CreatedKey, KeyInfo } from '../keys/service.js';
import { limitJson, limitText } from './key-limits.js';

export function iso(ms: number | null | undefined): string | null {
  return ms === null || ms === undefined ? null : new Date(ms).toISOString();
}

/** A key as `--json` prints it: times as ISO 8601, never a secret (except `key`/`refreshToken` on creation). */
export function keyJson(k: KeyInfo): Record<string, unknown> {
  return {
    id: k.id,
    name: k.name,
    subject: k.subject,
    role: k.role,
    scopes: k.scopes,
    audiences: k.audiences,
    allowedIps: k.allowedIps,
    legacy: k.legacy,
    refreshable: k.refreshable,
    status: k.status,
    createdAt: iso(k.createdAt),
    notBefore: iso(k.notBefore),
    expiresAt: iso(k.expiresAt),
    lastUsedAt: iso(k.lastUsedAt),
    revokedAt: iso(k.revokedAt),
    successorId: k.successorId,
    graceUntil: iso(k.graceUntil),
    ...limitJson(k),
  };
}

export function createdJson(c: CreatedKey & { graceUntil?: number | null }): Record<string, unknown> {
  return {
    ...keyJson(c),
    key: c.key,
    ...(c.refreshToken === undefined ? {} : { refreshToken: c.refreshToken, refreshExpiresAt: iso(c.refreshExpiresAt) }),
    replaced: c.replaced,
    ...(c.rotatedFrom === undefined ? {} : { rotatedFrom: c.rotatedFrom, graceUntil: iso(c.graceUntil) }),
  };
}

export function createdText(c: CreatedKey, head: string): string {
  const lines = [
    head,
    `  subject:   ${c.subject}`,
    `  role:      ${c.role}`,
    `  scopes:    ${c.scopes.length ? c.scopes.join(' ') : '-'}`,
  ];
  if (c.name !== null) lines.push(`  name:      ${c.name}`);
  if (c.audiences.length) lines.push(`  audiences: ${c.audiences.join(' ')}`);
  if (c.allowedIps.length) lines.push(`  allow IPs: ${c.allowedIps.join(' ')}`);
  if (c.notBefore !== null) lines.push(`  valid from: ${iso(c.notBefore)}`);
  lines.push(`  expires:   ${iso(c.expiresAt) ?? 'never'}`);
  const limits = limitText(c);
  if (limits !== '') lines.push(`  limits:    ${limits}`);
  if (c.replaced.length) lines.push(`  replaced (revoked): ${c.replaced.join(', ')}`);
  lines.push('', 'Key (shown only this once; store it now):', `  ${c.key}`);
  if (c.refreshToken !== undefined) {
    lines.push('', `Refresh token (shown only this once; expires ${iso(c.refreshExpiresAt)}):`, `  ${c.refreshToken}`);
  }
  return lines.join('\n');
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}

function short(ms: number | null): string {
  return ms === null ? '-' : new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export function listText(keys: readonly KeyInfo[]): string {
  if (keys.length === 0) return 'No keys.';
  const rows = [['ID', 'NAME', 'SUBJECT', 'ROLE', 'SCOPES', 'CREATED', 'EXPIRES', 'LAST USED', 'STATUS']];
  for (const k of keys) {
    rows.push([
      k.id,
      k.name ?? '-',
      k.subject,
      k.role,
      k.scopes.length ? k.scopes.join(',') : '-',
      short(k.createdAt),
      short(k.status === 'rotating' || k.status === 'rotated' ? k.graceUntil : k.expiresAt),
      short(k.lastUsedAt),
      k.legacy ? `${k.status} (imported)` : k.status,
    ]);
  }
  return table(rows);
}
