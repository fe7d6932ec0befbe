import type { ClientIdentity } from './identity.js';

/**
 * A route's identity allow-list, compiled once at config load. Any match
 * admits. Matching rules:
 * - `uri`: exact, or a prefix over whole segments when the pattern ends in
 *   `/*` ("spiffe://example.test/billing/*"); URIs with dot segments never match;
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

/** Splits an RFC 4514 string at unescaped commas into [type, value] pairs; null when malformed. */
export function parseSubjectPattern(text: string): [string, string][] | null {
  const pairs: [string, string][] = [];
  let current = '';
  const flush = (): boolean => {
    const eq = current.indexOf('=');
    if (eq <= 0) return false;
    pairs.push([current.slice(0, eq).trim().toUpperCase(), current.slice(eq + 1).trim()]);
    current = '';
    return true;
  };
  for (let i = 0; i < text.length; i++) {
    const ch = text[i] as string;
    if (ch === '\\' && i + 1 < text.length) {
      current += text[++i];
    } else if (ch === ',') {
      if (!flush()) return null;
    } else {
      current += ch;
    }
  }
  return flush() && pairs.length > 0 ? pairs : null;
}

/** "sha256:3f1a…" or "sha256:3F:1A:…" → "sha256:3F:1A:…"; null when not a SHA-256 fingerprint. */
export function normaliseFingerprint(text: string): string | null {
  const m = /^sha256:([0-9a-f:]+)$/i.exec(text.trim());
  const hex = m?.[1]?.replace(/:/g, '').toUpperCase();
  if (!hex || !/^[0-9A-F]{64}$/.test(hex)) return null;
  return `sha256:${hex.match(/../g)!.join(':')}`;
}

const dotSegment = /\/\.\.?(\/|$)/;

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
        // a URI with dot segments could climb out of a prefix once normalised: never a match
        if (dotSegment.test(uri)) continue;
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
