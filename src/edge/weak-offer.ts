import { highestOfferedVersion, type ClientHello } from './client-hello.js';

/**
 * What makes a client's offer weak, from the least to the most urgent to fix
 * before the minimum is raised:
 * - `no_tls13`: offers TLS 1.2 at most (served by the intermediate profile,
 *   refused by modern);
 * - `weak_ciphers_only`: offers TLS 1.2 or later but none of the AEAD suites
 *   with forward secrecy that any profile accepts;
 * - `legacy_protocol`: offers nothing newer than TLS 1.1.
 */
export type WeakOffer = 'legacy_protocol' | 'weak_ciphers_only' | 'no_tls13';

// IANA codes of the suites every profile accepts (config/tls-profiles.ts): the TLS 1.3 ones, and ECDHE with AES-GCM or ChaCha20-Poly1305
const tls13Suites = new Set([0x1301, 0x1302, 0x1303]);
const tls12Suites = new Set([0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8]);

/** Null for a client that offers TLS 1.3 with one of its suites. */
export function weakOfferOf(hello: ClientHello): WeakOffer | null {
  const highest = highestOfferedVersion(hello);
  if (highest < 0x0303) return 'legacy_protocol';
  const modern = highest >= 0x0304 && hello.cipherSuites.some((c) => tls13Suites.has(c));
  if (modern) return null;
  return hello.cipherSuites.some((c) => tls12Suites.has(c)) ? 'no_tls13' : 'weak_ciphers_only';
}
