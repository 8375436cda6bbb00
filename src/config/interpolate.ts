/**
 * `${VAR}` and `${VAR:-default}` in string values. `$${` escapes a literal `${`.
 * Returns the new string, or the name of a variable that is unset and has no default.
 */
const REF = /\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

export type InterpolateResult = { ok: true; value: string } | { ok: false; missing: string };

export function interpolate(input: string, env: Readonly<Record<string, string | undefined>>): InterpolateResult {
  if (!input.includes('${')) return { ok: true, value: input };
  let missing: string | undefined;
  const value = input.replace(REF, (whole, name: string | undefined, fallback: string | undefined) => {
    if (whole === '$${') return '${';
    const v = env[name!];
    if (v !== undefined && v !== '') return v;
    if (fallback !== undefined) return fallback;
    if (v === '') return '';
    missing ??= name;
    return '';
  });
  return missing === undefined ? { ok: true, value } : { ok: false, missing };
}
