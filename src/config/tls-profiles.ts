import { constants } from 'node:crypto';
import type { SecureVersion } from 'node:tls';
import { runtimeGroups, type GroupName } from './tls-groups.js';

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
  /**
   * Key-exchange groups in tuples of equal preference, the most preferred
   * tuple first: within a tuple a key share the client already sent wins, so
   * it costs no extra round trip; across tuples our order wins.
   */
  readonly groups: readonly (readonly GroupName[])[];
  /** `groups` as OpenSSL's groups list (`ecdhCurve`). */
  readonly ecdhCurve: string;
  /** `tls.postQuantum: required`: the hybrid group only (see postQuantumOnly). */
  readonly postQuantumRequired: boolean;
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

const classicalGroups: readonly GroupName[] = Object.freeze(['X25519', 'P-256', 'P-384']);

/**
 * With ML-KEM (OpenSSL ≥ 3.5): X25519MLKEM768 first, in a tuple of its own,
 * so a client that lists it gets it (after a HelloRetryRequest if it sent no
 * share for it), then the classical groups, where a client that does not list
 * the hybrid keeps the share it sent. "*" marks the shares Portcullis sends as
 * a client (to upstreams): the hybrid's and X25519's, as browsers do; a server
 * ignores it. Without ML-KEM: the classical groups.
 */
const groups: readonly (readonly GroupName[])[] = Object.freeze(runtimeGroups.postQuantum ? [Object.freeze<GroupName[]>(['X25519MLKEM768']), classicalGroups] : [classicalGroups]);
const groupsList = runtimeGroups.postQuantum ? `*X25519MLKEM768/*${classicalGroups.join(':')}` : classicalGroups.join(':');

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
  groups,
  ecdhCurve: groupsList,
  sigalgs: signatureAlgorithms.join(':'),
  secureOptions,
};

export const tlsProfiles: Readonly<Record<TlsProfile['name'], TlsProfile>> = Object.freeze({
  intermediate: Object.freeze({ name: 'intermediate', minVersion: 'TLSv1.2', postQuantumRequired: false, ...shared }),
  modern: Object.freeze({ name: 'modern', minVersion: 'TLSv1.3', postQuantumRequired: false, ...shared }),
});

/**
 * `modern` with `tls.postQuantum: required`: X25519MLKEM768 only, so a client
 * without it is refused in the handshake (no_shared_cipher,
 * ERR_SSL_NO_SUITABLE_KEY_SHARE). Null on a runtime without ML-KEM.
 */
export const postQuantumOnly: TlsProfile | null = runtimeGroups.postQuantum
  ? Object.freeze({ ...tlsProfiles.modern, postQuantumRequired: true, groups: Object.freeze([Object.freeze<GroupName[]>(['X25519MLKEM768'])]), ecdhCurve: '*X25519MLKEM768' })
  : null;
