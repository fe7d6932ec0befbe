import { unescapeDnValue, type ClientIdentity } from './identity.js';

/**
 * A route's identity allow-list, compiled once at config load. Any match
 * admits. Matching rules:
 * - `uri`: exact, or a prefix over whole segments when the pattern ends in
 *   `/*` ("spiffe://example.test/billing/*"); URIs with dot segments, literal
 *   or percent-encoded, or with encoded slashes or backslashes never match;
 * - `dns`: exact, or `*.` over exactly one whole label, against the DNS SANs
 *   (a wildcard SAN in a client certificate matches nothing);
 * - `subject`: every attribute listed must be among the certificate's values
 *   for that attribute type ("CN=reporting,O=Example"); others are ignored;
 * - `fingerprints`: SHA-256 of the certificate, "sha256:" plus hex, colons optional.
 */
export interface AllowList {
  matches(identity: ClientIdentity): boolean;
}

export interface RawAllowList {
  readonly uri?: readonly string[];
  readonly dns?: readonly string[];
  readonly subject?: readonly string[];
  readonly fingerprints?: readonly string[];
}

/**
 * Splits an RFC 4514 string at unescaped commas into [type, value] pairs;
 * null when malformed. Values are read as identities read certificates
 * (`unescapeDnValue`: "\,", and "\XX" hex escapes as UTF-8 bytes), so a
 * pattern can name any value a certificate holds; spaces around a value are
 * dropped unless escaped ("CN=a\ ").
 */
export function parseSubjectPattern(text: string): [string, string][] | null {
  const pairs: [string, string][] = [];
  let start = 0;
  for (let i = 0; i <= text.length; i++) {
    if (text[i] === '\\' && i + 1 < text.length) {
      i++; // the escaped character (or the first hex digit) never separates
      continue;
    }
    if (i < text.length && text[i] !== ',') continue;
    const part = text.slice(start, i);
    const eq = part.indexOf('=');
    if (eq <= 0) return null;
    pairs.push([part.slice(0, eq).trim().toUpperCase(), unescapeDnValue(trimValue(part.slice(eq + 1)))]);
    start = i + 1;
  }
  return pairs;
}

const whiteSpace = /\s/;

/** Leading and trailing white space off a raw value, except a trailing space escaped with a backslash. */
function trimValue(raw: string): string {
  let end = raw.length;
  while (end > 0 && whiteSpace.test(raw[end - 1] as string)) {
    let backslashes = 0;
    while (end - 2 - backslashes >= 0 && raw[end - 2 - backslashes] === '\\') backslashes++;
    if (backslashes % 2 === 1) break;
    end--;
  }
  return raw.slice(0, end).trimStart();
}

/** "sha256:3f1a…" or "sha256:3F:1A:…" → "sha256:3F:1A:…"; null when not a SHA-256 fingerprint. */
export function normaliseFingerprint(text: string): string | null {
  const m = /^sha256:([0-9a-f:]+)$/i.exec(text.trim());
  const hex = m?.[1]?.replace(/:/g, '').toUpperCase();
  if (!hex || !/^[0-9A-F]{64}$/.test(hex)) return null;
  return `sha256:${hex.match(/../g)!.join(':')}`;
}

/**
 * URI SANs that never match any pattern, exact or prefix. A dot segment
 * ("/../") climbs out of a prefix once the URI is normalised (RFC 3986
 * §5.2.4), and so does a percent-encoded one ("%2e%2e", ".%2E"): "%2E" is
 * "." (RFC 3986 §2.3, §6.2.2.2) for any upstream or policy engine that
 * decodes before it compares. An encoded slash ("%2F") or backslash ("%5C",
 * "\") splits segments differently depending on who decodes. Rather than
 * decode and guess which reading the upstream takes, such a URI is refused
 * outright: a conforming issuer never encodes an unreserved character such
 * as "." (RFC 3986 §2.3) and SPIFFE IDs admit no percent-encoding at all, so
 * a client certificate carrying one is suspicious, never merely unusual.
 */
const dotSegment = /\/\.\.?(\/|$)/;
const ambiguousEncoding = /%2e|%2f|%5c|\\/i;

/** Whether `uri` holds an encoded ".", "/" or backslash (%2E, %2F, %5C, any case) or a backslash itself: such a URI SAN never matches, and such a pattern would match nothing. */
export function hasAmbiguousEncoding(uri: string): boolean {
  return ambiguousEncoding.test(uri);
}

/** Compiles an allow-list; assumes the entries were validated by the schema. */
export function compileAllowList(raw: RawAllowList): AllowList {
  const exactUris = new Set<string>();
  const uriPrefixes: string[] = [];
  for (const u of raw.uri ?? []) {
    if (u.endsWith('*')) uriPrefixes.push(u.slice(0, -1));
    else exactUris.add(u);
  }
  const exactDns = new Set<string>();
  const dnsParents = new Set<string>();
  for (const d of raw.dns ?? []) {
    const name = d.toLowerCase();
    if (name.startsWith('*.')) dnsParents.add(name.slice(2));
    else exactDns.add(name);
  }
  const subjects = (raw.subject ?? []).map((s) => parseSubjectPattern(s) as [string, string][]);
  const fingerprints = new Set((raw.fingerprints ?? []).map((f) => normaliseFingerprint(f) as string));

  return {
    matches(identity) {
      for (const uri of identity.uris) {
        // could climb out of a prefix once normalised or decoded: never a match (see ambiguousEncoding)
        if (dotSegment.test(uri) || hasAmbiguousEncoding(uri)) continue;
        if (exactUris.has(uri)) return true;
        for (const prefix of uriPrefixes) if (uri.startsWith(prefix)) return true;
      }
      for (const name of identity.dnsNames) {
        // a certificate's own wildcard names no particular client
        if (name.includes('*')) continue;
        if (exactDns.has(name)) return true;
        const dot = name.indexOf('.');
        if (dot > 0 && dnsParents.has(name.slice(dot + 1))) return true;
      }
      for (const pairs of subjects) {
        if (pairs.every(([type, value]) => identity.subjectAttributes.get(type)?.includes(value))) return true;
      }
      return fingerprints.has(identity.fingerprint);
    },
  };
}
