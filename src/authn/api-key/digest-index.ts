/** Digests cached under one name: one digest as the string itself, more as a Set. */
export type Digests = string | Set<string>;

export function indexAdd(map: Map<string, Digests>, name: string, digest: string): void {
  const cur = map.get(name);
  if (cur === undefined) map.set(name, digest);
  else if (typeof cur !== 'string') cur.add(digest);
  else if (cur !== digest) map.set(name, new Set([cur, digest]));
}

export function indexRemove(map: Map<string, Digests>, name: string, digest: string): void {
  const cur = map.get(name);
  if (cur === undefined) return;
  if (typeof cur === 'string') {
    if (cur === digest) map.delete(name);
    return;
  }
  cur.delete(digest);
  if (cur.size === 1) map.set(name, cur.values().next().value!);
  else if (cur.size === 0) map.delete(name);
}
