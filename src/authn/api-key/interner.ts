/** Distinct values an intern table keeps; past that, new values are used as they come. */
const INTERN_MAX = 1024;

/**
 * One copy of values many cached identities share (role names, scope and audience lists):
 * 100 000 keys of one role with the same scopes hold one string and one frozen array.
 */
export class Interner<T> {
  readonly #map = new Map<string, T>();

  get(key: string, make: () => T): T {
    let v = this.#map.get(key);
    if (v === undefined) {
      v = make();
      if (this.#map.size < INTERN_MAX) this.#map.set(key, v);
    }
    return v;
  }
}
