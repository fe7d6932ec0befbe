import { X509Certificate } from 'node:crypto';
import type { PeerCertificate, TLSSocket } from 'node:tls';
import type { Reason } from '../errors.js';
import { identityHeaderValue } from './identity-header.js';
import { identityOf, type ClientIdentity } from './identity.js';

/** Why a presented client certificate is refused: reason codes of the catalog (errors.ts). */
export type ClientCertReason = Extract<Reason, 'unknown_ca' | 'expired' | 'not_yet_valid' | 'bad_signature' | 'wrong_key_usage' | 'chain_too_long' | 'revoked' | 'bad_certificate'>;

/** The verdict on a connection's client certificate, reached once per connection (resumed ones included). */
export type ClientCertificate =
  | { readonly status: 'none' }
  /** `header` is the identity header value, formatted once per connection. */
  | { readonly status: 'valid'; readonly identity: ClientIdentity; readonly header: string }
  /** `identity` is null when the certificate could not even be read. */
  | { readonly status: 'invalid'; readonly reason: ClientCertReason; readonly detail: string; readonly identity: ClientIdentity | null };

/** What the check needs of a site's clientAuth. */
export interface ClientCertPolicy {
  readonly verifyDepth: number;
  readonly caCerts: readonly X509Certificate[];
  /** Names the policy: remembered verdicts apply only under the same one. */
  readonly key: string;
}

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

/** An identity header longer than this would be refused by most upstreams: the SAN lists are left out. */
const maxHeaderBytes = 8192;

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

type Linked = PeerCertificate & { issuerCertificate?: Linked };

/**
 * Counts the CA certificates above the leaf on the chain Node shows, after
 * checking that it is a real chain: every link verifies with the next one's
 * key and the chain ends at one of the site's CAs. Node builds those links by
 * name only, so certificates a client adds as decoys could otherwise hide
 * how long the chain OpenSSL verified is. Null when the chain does not hold.
 */
function verifiedDepth(peer: Linked, cas: readonly X509Certificate[]): number | null {
  let cert = new X509Certificate(peer.raw);
  let link: Linked = peer;
  for (let depth = 0; depth <= 32; depth++) {
    const anchor = cas.find((ca) => ca.fingerprint256 === cert.fingerprint256);
    if (anchor && depth > 0) return depth;
    const next = link.issuerCertificate;
    if (!next?.raw || next === link) {
      // the leaf itself may be issued directly by a listed CA that Node did not link
      const issuer = cas.find((ca) => ca.subject === cert.issuer && cert.verify(ca.publicKey));
      return issuer ? depth + 1 : null;
    }
    const issuer = new X509Certificate(next.raw);
    if (!cert.verify(issuer.publicKey)) return null;
    cert = issuer;
    link = next;
  }
  return null;
}

/** OpenSSL's code for the failed verification, with its text when Node has no name for it. */
function failureCode(socket: TLSSocket): string {
  const failure = socket.authorizationError as unknown as string | (Error & { code?: string }) | null | undefined;
  const code = typeof failure === 'string' ? failure : (failure?.code ?? failure?.message ?? 'UNKNOWN');
  if (code !== 'UNSPECIFIED') return code;
  // Node names only the common X509_V_ERR codes; its native handle still has OpenSSL's message
  const message = (socket as unknown as { _handle?: { verifyError?: () => Error | null } })._handle?.verifyError?.()?.message;
  return message ? `UNSPECIFIED: ${message}` : code;
}

function judge(socket: TLSSocket, policy: ClientCertPolicy): ClientCertificate {
  const peer = socket.getPeerCertificate(true) as Linked | undefined;
  if (!peer?.raw) return none;
  const leaf = new X509Certificate(peer.raw);
  const identity = identityOf(leaf);
  if (!socket.authorized || socket.authorizationError) {
    const code = failureCode(socket);
    const reason = byOpenSslCode[code] ?? 'bad_certificate';
    return { status: 'invalid', reason: reason === 'unknown_ca' && forgedUnder(leaf, policy.caCerts) ? 'bad_signature' : reason, detail: code, identity };
  }
  if (!(leaf.keyUsage ?? []).includes(clientAuthOid)) {
    return { status: 'invalid', reason: 'wrong_key_usage', detail: `extended key usage is ${leaf.keyUsage?.join(', ') || 'absent'}, not clientAuth`, identity };
  }
  const chainKey = `${policy.key} ${identity.fingerprint}`;
  const depth = verifiedDepth(peer, policy.caCerts);
  if (depth === null && socket.isSessionReused()) {
    // A resumed session keeps the leaf, not the chain: fall back on what the full handshake
    // that made the session found (sessions never resume across policy changes).
    const earlier = chainVerdicts.get(chainKey);
    return earlier ? { status: 'invalid', ...earlier, identity } : { status: 'valid', identity, header: headerFor(identity) };
  }
  const chainFailure: ChainFailure | null =
    depth === null
      ? { reason: 'bad_certificate', detail: 'the chain the client sent does not lead to a configured CA by valid signatures' }
      : depth > policy.verifyDepth
        ? { reason: 'chain_too_long', detail: `${depth} CA certificates above the leaf; clientAuth.verifyDepth is ${policy.verifyDepth}` }
        : null;
  if (chainFailure) {
    rememberChainFailure(chainKey, chainFailure);
    return { status: 'invalid', ...chainFailure, identity };
  }
  return { status: 'valid', identity, header: headerFor(identity) };
}

type ChainFailure = { readonly reason: ClientCertReason; readonly detail: string };

/**
 * Chain verdicts that OpenSSL's own result (which a session keeps) does not
 * carry, by policy and certificate, so that a session made by a refused
 * connection is refused again when it resumes in this process. Bounded:
 * the oldest entries go first.
 */
const chainVerdicts = new Map<string, ChainFailure>();
const maxChainVerdicts = 10_000;

function rememberChainFailure(key: string, failure: ChainFailure): void {
  chainVerdicts.delete(key);
  chainVerdicts.set(key, failure);
  if (chainVerdicts.size > maxChainVerdicts) chainVerdicts.delete(chainVerdicts.keys().next().value as string);
}

function headerFor(identity: ClientIdentity): string {
  const header = identityHeaderValue(identity);
  return Buffer.byteLength(header) > maxHeaderBytes ? identityHeaderValue({ ...identity, uris: [], dnsNames: [], emails: [] }) : header;
}

/**
 * Judges the client certificate of a finished handshake. OpenSSL has already
 * checked the chain against the site's CAs (with `rejectUnauthorized: false`,
 * so the handshake completes and we can tell why); this adds what it does not
 * enforce: an explicit clientAuth extended key usage and the depth limit
 * (`verifyDepth` counts CA certificates above the leaf, trust anchor included).
 * Never throws: any certificate a client sends, however malformed, ends as a
 * verdict (`bad_certificate` when it cannot be read).
 */
export function verifyClientCertificate(socket: TLSSocket, policy: ClientCertPolicy): ClientCertificate {
  try {
    return judge(socket, policy);
  } catch (err) {
    return { status: 'invalid', reason: 'bad_certificate', detail: `unreadable certificate: ${(err as Error).message}`, identity: null };
  }
}
