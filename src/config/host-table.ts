/**
 * Host name → value lookup for SNI and Host headers, compiled once.
 * Exact names win over wildcards; a `*.` wildcard matches exactly one label,
 * as certificates do (RFC 6125 §6.4.3), so `*.api.test` matches `a.api.test`
 * but neither `api.test` nor `a.b.api.test`.
 */
export class HostTable<T> {
  readonly #exact = new Map<string, T>();
  readonly #wildcard = new Map<string, T>();

  /** `host` must already be normalised (lower case, see `normaliseSiteHost`). Returns false when taken. */
  add(host: string, value: T): boolean {
    const map = host.startsWith('*.') ? this.#wildcard : this.#exact;
    const key = host.startsWith('*.') ? host.slice(2) : host;
    if (map.has(key)) return false;
    map.set(key, value);
    return true;
  }

  /** `name` must be lower case without port or trailing dot. */
  lookup(name: string): T | undefined {
    const exact = this.#exact.get(name);
    if (exact !== undefined) return exact;
    const dot = name.indexOf('.');
    return dot > 0 ? this.#wildcard.get(name.slice(dot + 1)) : undefined;
  }
}
