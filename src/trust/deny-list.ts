import type { X509Certificate } from 'node:crypto';
import { normaliseFingerprint } from './allow-list.js';
import { normaliseSerial } from './crl.js';
import { rfc4514 } from './identity.js';

/**
 * One blocked certificate: by SHA-256 fingerprint, or by serial number and
 * issuer name (RFC 4514, as the logs print it), which also blocks a re-issue
 * of the same serial that a fingerprint would miss.
 */
export type DenyEntry =
  | { readonly fingerprint: string; readonly note: string | null; readonly addedAt: string }
  | { readonly serial: string; readonly issuer: string; readonly note: string | null; readonly addedAt: string };

/**
 * Names compared the way people type them: case, spaces after commas and the
 * order of the attributes do not matter (the logs print "CN=…,O=…", openssl
 * prints "O = …, CN = …").
 */
function nameKey(name: string): string {
  return name
    .split(/(?<!\\),/)
    .map((rdn) => rdn.replace(/\s*=\s*/, '=').trim().toLowerCase())
    .sort()
    .join(',');
}

/** The key an entry is found under; two entries with the same key are the same entry. */
export function denyKey(entry: DenyEntry): string {
  return 'fingerprint' in entry ? entry.fingerprint : `${normaliseSerial(entry.serial)}/${nameKey(entry.issuer)}`;
}

/**
 * Validates what an operator asks to block; returns a message naming the
 * field and the fix when it cannot be used.
 */
export function denyEntry(target: { fingerprint?: string; serial?: string; issuer?: string }, note: string | null, addedAt: Date): DenyEntry | string {
  if (target.fingerprint !== undefined) {
    if (target.serial !== undefined || target.issuer !== undefined) return 'give either --fingerprint, or --serial with --issuer, not both';
    const fingerprint = normaliseFingerprint(target.fingerprint);
    if (!fingerprint) return `--fingerprint ${target.fingerprint} is not a SHA-256 fingerprint; give it as "sha256:" and 64 hex digits (colons optional), as the logs print it`;
    return { fingerprint, note, addedAt: addedAt.toISOString() };
  }
  if (target.serial === undefined || target.issuer === undefined) return 'give --fingerprint sha256:…, or --serial HEX with --issuer "CN=…,O=…" (as the logs print them)';
  if (!/^(0x)?[0-9a-f:]+$/i.test(target.serial)) return `--serial ${target.serial} is not a hexadecimal serial number; give it as the logs print it, e.g. 1A2B3C`;
  if (!/^[A-Za-z0-9.]+\s*=/.test(target.issuer.trim())) return `--issuer ${target.issuer} is not a distinguished name; give it as the logs print it, e.g. "CN=Clients CA,O=Example"`;
  return { serial: normaliseSerial(target.serial.replace(/^0x/i, '')), issuer: target.issuer.trim(), note, addedAt: addedAt.toISOString() };
}

/** An immutable snapshot of the deny list, compiled for lookups on every connection. */
export class DenyList {
  static readonly empty = new DenyList([]);
  readonly entries: readonly DenyEntry[];
  readonly #byKey: ReadonlyMap<string, DenyEntry>;

  constructor(entries: readonly DenyEntry[]) {
    this.entries = Object.freeze([...entries]);
    this.#byKey = new Map(entries.map((e) => [denyKey(e), e]));
  }

  get size(): number {
    return this.#byKey.size;
  }

  /** The entry that blocks this certificate (leaf or CA of a client chain), or null. */
  match(cert: X509Certificate): DenyEntry | null {
    if (this.#byKey.size === 0) return null;
    return (
      this.#byKey.get(`sha256:${cert.fingerprint256}`) ??
      this.#byKey.get(`${normaliseSerial(cert.serialNumber)}/${nameKey(rfc4514(cert.issuer))}`) ??
      null
    );
  }
}
