import { X509Certificate } from 'node:crypto';
import type { PeerCertificate, TLSSocket } from 'node:tls';
import type { Reason } from '../errors.js';
import { identityOf, type ClientIdentity } from './identity.js';

/** Why a presented client certificate is refused: reason codes of the catalog (errors.ts). */
export type ClientCertReason = Extract<Reason, 'unknown_ca' | 'expired' | 'not_yet_valid' | 'bad_signature' | 'wrong_key_usage' | 'chain_too_long' | 'revoked' | 'bad_certificate'>;

/** The verdict on a connection's client certificate, reached once per connection (resumed ones included). */
export type ClientCertificate =
  | { readonly status: 'none' }
  | { readonly status: 'valid'; readonly identity: ClientIdentity }
  | { readonly status: 'invalid'; readonly reason: ClientCertReason; readonly detail: string; readonly identity: ClientIdentity };

const none: ClientCertificate = Object.freeze({ status: 'none' });
const clientAuthOid = '1.3.6.1.5.5.7.3.2';

/** OpenSSL verification codes (X509_V_ERR_*, as Node names them) → reason. */
const byOpenSslCode: Record<string, ClientCertReason> = {
  CERT_HAS_EXPIRED: 'expired',
  CERT_NOT_YET_VALID: 'not_yet_valid',
  CERT_SIGNATURE_FAILURE: 'bad_signature',
  UNABLE_TO_DECRYPT_CERT_SIGNATURE: 'bad_signature',
  UNABLE_TO_GET_ISSUER_CERT: 'unknown_ca',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'unknown_ca',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'unknown_ca',
  SELF_SIGNED_CERT_IN_CHAIN: 'unknown_ca',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'unknown_ca',
  CERT_UNTRUSTED: 'unknown_ca',
  INVALID_CA: 'unknown_ca',
  INVALID_PURPOSE: 'wrong_key_usage',
  CERT_CHAIN_TOO_LONG: 'chain_too_long',
  PATH_LENGTH_EXCEEDED: 'chain_too_long',
  CERT_REVOKED: 'revoked',
};

/** CA certificates above the leaf in the chain OpenSSL verified (the trust anchor included). */
function casAbove(peer: PeerCertificate): number {
  let depth = 0;
  let cert = peer as PeerCertificate & { issuerCertificate?: PeerCertificate };
  while (cert.issuerCertificate && cert.issuerCertificate !== cert && depth < 64) {
    depth++;
    cert = cert.issuerCertificate as PeerCertificate & { issuerCertificate?: PeerCertificate };
  }
  return depth;
}

/**
 * OpenSSL 3 reports a leaf whose signature does not verify as "unable to
 * verify the leaf signature", the same as a leaf whose issuer it cannot find.
 * A leaf that names one of the site's CAs as its issuer but whose signature
 * that CA's key does not verify is a forgery or corruption: bad_signature.
 */
function forgedUnder(leaf: X509Certificate, cas: readonly X509Certificate[]): boolean {
  // by name: X509_check_issued (checkIssued) already refuses an issuer whose key did not sign
  return cas.some((ca) => ca.subject === leaf.issuer && !leaf.verify(ca.publicKey));
}

/**
 * Judges the client certificate of a finished handshake. OpenSSL has already
 * checked the chain against the site's CAs (with `rejectUnauthorized: false`,
 * so the handshake completes and we can tell why); this adds what it does not
 * enforce: an explicit clientAuth extended key usage and the depth limit.
 * `verifyDepth` counts CA certificates above the leaf, trust anchor included.
 */
export function verifyClientCertificate(socket: TLSSocket, policy: { readonly verifyDepth: number; readonly caCerts: readonly X509Certificate[] }): ClientCertificate {
  const verifyDepth = policy.verifyDepth;
  const peer = socket.getPeerCertificate(true);
  if (!peer?.raw) return none;
  const leaf = new X509Certificate(peer.raw);
  const identity = identityOf(leaf);
  const failure = socket.authorizationError as unknown as string | Error | null | undefined;
  if (!socket.authorized || failure) {
    const code = typeof failure === 'string' ? failure : ((failure as (Error & { code?: string }) | null | undefined)?.code ?? failure?.message ?? 'UNKNOWN');
    const reason = byOpenSslCode[code] ?? 'bad_certificate';
    return { status: 'invalid', reason: reason === 'unknown_ca' && forgedUnder(leaf, policy.caCerts) ? 'bad_signature' : reason, detail: code, identity };
  }
  if (!(leaf.keyUsage ?? []).includes(clientAuthOid)) {
    return { status: 'invalid', reason: 'wrong_key_usage', detail: `extended key usage is ${leaf.keyUsage?.join(', ') || 'absent'}, not clientAuth`, identity };
  }
  const depth = casAbove(peer);
  if (depth > verifyDepth) return { status: 'invalid', reason: 'chain_too_long', detail: `${depth} CA certificates above the leaf; clientAuth.verifyDepth is ${verifyDepth}`, identity };
  return { status: 'valid', identity };
}
