import { isIP } from 'node:net';

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

/** Parses "host:port" or "[v6]:port". Returns null when the text is not one. */
export function parseListenAddress(text: string): ListenAddress | null {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(text);
  if (!m) return null;
  const host = (m[1] ?? m[2]) as string;
  const port = Number(m[3]);
  if (port > 65535) return null;
  if (m[1] !== undefined && isIP(host) !== 6) return null;
  return { host, port };
}

/** "host:port" with IPv6 literals bracketed, for messages and URLs. */
export function formatHostPort(host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

const label = '(?!-)[a-z0-9-]{1,63}(?<!-)';
const dnsName = new RegExp(`^${label}(?:\\.${label})*$`);

/**
 * A site host: a DNS name, a `*.` wildcard over whole labels (one label deep,
 * as RFC 6125 §6.4.3 matches certificates), or an IP literal. Returns the
 * lower-cased form, or null when the text is none of these.
 */
export function normaliseSiteHost(text: string): string | null {
  const host = text.toLowerCase();
  if (isIP(host)) return host;
  if (host.startsWith('*.')) return dnsName.test(host.slice(2)) && host.slice(2).includes('.') ? host : null;
  return host.length <= 253 && dnsName.test(host) ? host : null;
}

/**
 * The host part of a Host header or :authority, lower-cased and without the
 * port; null when it is malformed (userinfo, spaces, bad brackets, bad port).
 */
export function hostFromAuthority(authority: string): string | null {
  let host = authority;
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    if (end < 0) return null;
    const rest = host.slice(end + 1);
    if (rest !== '' && !/^:\d{1,5}$/.test(rest)) return null;
    host = host.slice(1, end);
    return isIP(host) === 6 ? host.toLowerCase() : null;
  }
  const colon = host.indexOf(':');
  if (colon >= 0) {
    if (!/^\d{1,5}$/.test(host.slice(colon + 1))) return null;
    host = host.slice(0, colon);
  }
  host = host.toLowerCase();
  if (host.endsWith('.')) host = host.slice(0, -1);
  if (isIP(host) === 4) return host;
  return host.length > 0 && host.length <= 253 && dnsName.test(host) ? host : null;
}

/**
 * True when a raw header list (Node's `rawHeaders`) carries more than one
 * Host field. RFC 9112 §3.2 requires 400 then: Node keeps only the first,
 * and a component behind us might read another.
 */
export function hasDuplicateHost(rawHeaders: readonly string[]): boolean {
  let seen = false;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string;
    if (name.length === 4 && name.toLowerCase() === 'host') {
      if (seen) return true;
      seen = true;
    }
  }
  return false;
}

/** Whether two configured addresses (either may be absent) are the same. */
export const sameAddress = (a: ListenAddress | null, b: ListenAddress | null): boolean => a === b || (a !== null && b !== null && a.host === b.host && a.port === b.port);
