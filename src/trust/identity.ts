import { createHash, type X509Certificate } from 'node:crypto';

/** Who a client certificate names, extracted once per connection from the leaf. */
export interface ClientIdentity {
  /** RFC 4514 order (most specific first): "CN=reporting,O=Example". */
  readonly subject: string;
  readonly issuer: string;
  /** Attribute type → values, from the subject ("CN" → ["reporting"]). */
  readonly subjectAttributes: ReadonlyMap<string, readonly string[]>;
  /** Upper-case hex. */
  readonly serial: string;
  /** "sha256:" + upper-case hex with colons, of the DER certificate. */
  readonly fingerprint: string;
  /** base64 SHA-256 of the SubjectPublicKeyInfo (HPKP-style pin). */
  readonly spkiPin: string;
  readonly uris: readonly string[];
  readonly dnsNames: readonly string[];
  readonly emails: readonly string[];
  /** As OpenSSL prints it ("Nov 30 00:00:00 2026 GMT"). */
  readonly notAfter: string;
}

/**
 * Node's subjectAltName text: "DNS:a, URI:spiffe://x, email:b". Values with
 * special characters come JSON-quoted (Node escapes them since CVE-2021-44532).
 */
export function parseSubjectAltName(text: string | undefined): { type: string; value: string }[] {
  const out: { type: string; value: string }[] = [];
  if (!text) return out;
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(':', i);
    if (colon < 0) break;
    const type = text.slice(i, colon);
    let value: string;
    let next: number;
    if (text[colon + 1] === '"') {
      let end = colon + 2;
      while (end < text.length && text[end] !== '"') end += text[end] === '\\' ? 2 : 1;
      try {
        value = JSON.parse(text.slice(colon + 1, end + 1)) as string;
      } catch {
        value = text.slice(colon + 2, end);
      }
      next = text.indexOf(', ', end);
    } else {
      next = text.indexOf(', ', colon);
      value = text.slice(colon + 1, next < 0 ? undefined : next);
    }
    out.push({ type, value });
    if (next < 0) break;
    i = next + 2;
  }
  return out;
}

/** Node's multi-line distinguished name ("CN=a\nO=b", DER order, "," escaped as "\,"). */
function nameLines(text: string): string[] {
  return text.split('\n').filter((l) => l.length > 0);
}

const utf8 = new TextDecoder();

const isHex = (c: number) => (c >= 48 && c <= 57) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102);

/** The byte of the two hex digits at `at`, or -1. */
function hexPair(text: string, at: number): number {
  return at + 2 <= text.length && isHex(text.charCodeAt(at)) && isHex(text.charCodeAt(at + 1)) ? parseInt(text.slice(at, at + 2), 16) : -1;
}

/**
 * An attribute value of an RFC 4514 string as the certificate holds it
 * (RFC 4514 §2.4, §3): "\," and the like stand for the character after the
 * backslash; "\XX" stands for one byte, and a run of such bytes is UTF-8
 * ("\C3\A9" is "é"). Node prints control characters this way: a CN of "a",
 * a newline and "b" is printed "a\0Ab", which must read back with its
 * newline, not as "a0Ab". Bytes that are not UTF-8 read as U+FFFD; a lone
 * backslash at the end is kept.
 */
export function unescapeDnValue(text: string): string {
  if (!text.includes('\\')) return text;
  let out = '';
  let bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const byte = text[i] === '\\' ? hexPair(text, i + 1) : -1;
    if (byte >= 0) {
      bytes.push(byte);
      i += 2;
      continue;
    }
    if (bytes.length > 0) {
      out += utf8.decode(Uint8Array.from(bytes));
      bytes = [];
    }
    // "\," → ","; a backslash at the very end stands for itself
    out += text[i] === '\\' && i + 1 < text.length ? text[++i] : text[i];
  }
  if (bytes.length > 0) out += utf8.decode(Uint8Array.from(bytes));
  return out;
}

/** RFC 4514 string form of Node's multi-line name ("CN=a\nO=b" → "O=b,CN=a"… most specific first). */
export function rfc4514(text: string): string {
  return nameLines(text).reverse().join(',');
}

function attributes(text: string): Map<string, string[]> {
  const map = new Map<string, string[]>();
  for (const line of nameLines(text)) {
    const eq = line.indexOf('=');
    if (eq < 0) continue;
    const type = line.slice(0, eq).toUpperCase();
    const list = map.get(type) ?? [];
    list.push(unescapeDnValue(line.slice(eq + 1)));
    map.set(type, list);
  }
  return map;
}

/** "sha256:AB:CD:…" of DER bytes. */
export function fingerprintOf(der: Buffer): string {
  return `sha256:${createHash('sha256').update(der).digest('hex').toUpperCase().match(/../g)!.join(':')}`;
}

/** Everything an allow-list, the identity header and the logs need, from the leaf certificate. */
export function identityOf(leaf: X509Certificate): ClientIdentity {
  const sans = parseSubjectAltName(leaf.subjectAltName);
  const spki = leaf.publicKey.export({ type: 'spki', format: 'der' });
  return {
    subject: rfc4514(leaf.subject),
    issuer: rfc4514(leaf.issuer),
    subjectAttributes: attributes(leaf.subject),
    serial: leaf.serialNumber.toUpperCase(),
    fingerprint: fingerprintOf(leaf.raw),
    spkiPin: createHash('sha256').update(spki).digest('base64'),
    uris: sans.filter((s) => s.type === 'URI').map((s) => s.value),
    dnsNames: sans.filter((s) => s.type === 'DNS').map((s) => s.value.toLowerCase()),
    emails: sans.filter((s) => s.type === 'email').map((s) => s.value),
    // as the certificate states it: a client's certificate may carry a time no Date can hold
    notAfter: leaf.validTo,
  };
}
