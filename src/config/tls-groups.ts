import { createSecureContext } from 'node:tls';

/**
 * Key-exchange groups (IANA "TLS Supported Groups"), by the names OpenSSL
 * accepts in a groups list. The hybrid ones combine a classical ECDH share
 * with ML-KEM (FIPS 203), so a recording of today's handshake stays secret
 * if either half holds; X25519Kyber768Draft00 is their pre-standard forerunner.
 */
const ids = {
  X25519MLKEM768: 0x11ec,
  SecP256r1MLKEM768: 0x11eb,
  SecP384r1MLKEM1024: 0x11ed,
  X25519Kyber768Draft00: 0x6399,
  X25519: 0x001d,
  X448: 0x001e,
  'P-256': 0x0017,
  'P-384': 0x0018,
  'P-521': 0x0019,
} as const;

export type GroupName = keyof typeof ids;

export const groupId = (name: GroupName): number => ids[name];

const names = new Map<number, GroupName>(Object.entries(ids).map(([name, id]) => [id, name as GroupName]));

/** The name of a group by its code point; "0x…" for one we have no name for. */
export function groupName(id: number): string {
  return names.get(id) ?? `0x${id.toString(16).padStart(4, '0')}`;
}

/** Post-quantum hybrid groups: TLS 1.3 only. */
export const postQuantumGroups: ReadonlySet<number> = new Set([ids.X25519MLKEM768, ids.SecP256r1MLKEM768, ids.SecP384r1MLKEM1024, ids.X25519Kyber768Draft00]);

function accepts(ecdhCurve: string): boolean {
  try {
    createSecureContext({ ecdhCurve });
    return true;
  } catch {
    return false;
  }
}

/**
 * What this runtime's OpenSSL can do with groups, found once by asking it:
 * ML-KEM arrived with OpenSSL 3.5 (Node 24, Node ≥ 22.20), and with it the
 * groups list syntax of tuples of equal preference ("a/b:c") and key-share
 * marks ("*a"). Node 20 bundles OpenSSL 3.0: neither.
 */
export const runtimeGroups = Object.freeze({
  openssl: process.versions.openssl ?? 'unknown',
  postQuantum: accepts('X25519MLKEM768'),
  tuples: accepts('*X25519/P-256'),
});

/**
 * What an operator should hear about the runtime at start, or null on one
 * with ML-KEM: without it every key exchange is classical; Node 20 is also
 * past its end of life (April 2026).
 */
export function runtimeAdvice(nodeVersion = process.version, postQuantum = runtimeGroups.postQuantum, openssl = runtimeGroups.openssl): string | null {
  if (postQuantum) return null;
  const endOfLife = /^v(1\d|20)\./.test(nodeVersion) ? `; Node ${nodeVersion.split('.')[0]?.slice(1)} reached end of life in April 2026 and gets no security fixes` : '';
  return (
    `Node ${nodeVersion} bundles OpenSSL ${openssl}, which has no ML-KEM: handshakes use classical key exchange only (X25519, P-256, P-384), not X25519MLKEM768; ` +
    `run Portcullis on Node 24 LTS (or Node 22.20 or later) for post-quantum key exchange${endOfLife}`
  );
}
