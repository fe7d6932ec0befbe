import { constants } from 'node:crypto';
import type { SecureVersion } from 'node:tls';

/**
 * TLS profiles. There is deliberately no way to configure anything weaker:
 * no TLS < 1.2, no CBC, no RSA key exchange, no DHE, no SHA-1 signatures.
 * Both cipher lists are set explicitly: Node reads TLS 1.3 suites from the
 * `TLS_*` names of the same string and would keep its defaults otherwise.
 */
export interface TlsProfile {
  readonly name: 'intermediate' | 'modern';
  readonly minVersion: SecureVersion;
  readonly maxVersion: SecureVersion;
  /** TLS 1.3 suites and TLS 1.2 ciphers, in server preference order. */
  readonly ciphers: string;
  readonly ecdhCurve: string;
  readonly sigalgs: string;
  readonly secureOptions: number;
}

export const tls13Suites = ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256'] as const;

/** ECDHE with AES-GCM or ChaCha20-Poly1305 only (Mozilla "intermediate" without DHE). */
export const tls12Ciphers = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
] as const;

export const groups = ['X25519', 'P-256', 'P-384'] as const;

/** Handshake signatures: no SHA-1, no SHA-224. */
const signatureAlgorithms = [
  'ecdsa_secp256r1_sha256',
  'ecdsa_secp384r1_sha384',
  'ecdsa_secp521r1_sha512',
  'ed25519',
  'rsa_pss_rsae_sha256',
  'rsa_pss_rsae_sha384',
  'rsa_pss_rsae_sha512',
  'rsa_pss_pss_sha256',
  'rsa_pss_pss_sha384',
  'rsa_pss_pss_sha512',
  'rsa_pkcs1_sha256',
  'rsa_pkcs1_sha384',
  'rsa_pkcs1_sha512',
];

const secureOptions =
  constants.SSL_OP_CIPHER_SERVER_PREFERENCE |
  constants.SSL_OP_PRIORITIZE_CHACHA |
  constants.SSL_OP_NO_RENEGOTIATION |
  constants.SSL_OP_NO_COMPRESSION;

const shared = {
  maxVersion: 'TLSv1.3' as const,
  ciphers: [...tls13Suites, ...tls12Ciphers].join(':'),
  ecdhCurve: groups.join(':'),
  sigalgs: signatureAlgorithms.join(':'),
  secureOptions,
};

export const tlsProfiles: Readonly<Record<TlsProfile['name'], TlsProfile>> = Object.freeze({
  intermediate: Object.freeze({ name: 'intermediate', minVersion: 'TLSv1.2', ...shared }),
  modern: Object.freeze({ name: 'modern', minVersion: 'TLSv1.3', ...shared }),
});
