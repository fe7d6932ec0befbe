import { X509Certificate } from 'node:crypto';
import type { PeerCertificate, TLSSocket } from 'node:tls';
import type { Reason } from '../errors.js';
import { identityHeaderValue } from './identity-header.js';
import { identityOf, type ClientIdentity } from './identity.js';
import { issuerAmong, knownIntermediates } from './known-intermediates.js';

/** Why a presented client certificate is refused: reason codes of the catalog (errors.ts). */
export type ClientCertReason = Extract<Reason, 'unknown_ca' | 'expired' | 'not_yet_valid' | 'bad_signature' | 'wrong_key_usage' | 'chain_too_long' | 'revoked' | 'revocation_unavailable' | 'bad_certificate'>;

/** The verdict on a connection's client certificate, reached once per connection (resumed ones included). */
export type ClientCertificate =
  | { readonly status: 'none' }
  /**
   * `header` is the identity header value, formatted once per connection.
   * `chain` runs from the leaf to the configured root, for the revocation
   * check; null when a resumed session's chain could not be rebuilt.
   */
  | { readonly status: 'valid'; readonly identity: ClientIdentity; readonly header: string; readonly leaf: X509Certificate; readonly chain: readonly X509Certificate[] | null }
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

/** The reason for an OpenSSL verification code (X509_V_ERR_*, as Node names it). */
export function clientCertReasonOf(code: string): ClientCertReason {
  return byOpenSslCode[code] ?? 'bad_certificate';
}

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
 * The chain from the leaf up to a configured root, checked link by link:
 * every certificate verifies with the next one's key. Node links the
 * certificates by name only, so decoys a client adds could otherwise hide
 * how long the chain OpenSSL verified is. Where Node shows no further link
 * (a resumed session, or a CA the server holds), the issuer is looked up
 * among the site's CAs and the intermediates seen before. Null when no chain
 * to a configured root holds.
 */
function verifiedChain(leaf: X509Certificate, peer: Linked, cas: readonly X509Certificate[]): X509Certificate[] | null {
  let cert = leaf;
  const chain = [cert];
  let link: Linked | undefined = peer;
  for (let hops = 0; hops <= 32; hops++) {
    if (cert.subject === cert.issuer && cas.some((ca) => ca.fingerprint256 === cert.fingerprint256)) return chain;
    const next: Linked | undefined = link?.issuerCertificate;
    let issuer: X509Certificate | undefined;
    if (next?.raw && next !== link) {
      issuer = new X509Certificate(next.raw);
      if (!cert.verify(issuer.publicKey)) return null;
      link = next;
    } else {
      issuer = issuerAmong(cert, cas) ?? issuerAmong(cert, knownIntermediates.values());
      if (!issuer) return null;
      link = undefined;
    }
    chain.push(issuer);
    cert = issuer;
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

/**
 * What a presented chain says whatever the connection: the leaf's identity,
 * its key usage, and the chain up to a configured root with its depth.
 * Computing it parses and verifies certificates, which costs more than the
 * rest of a handshake's own work, so it is remembered per policy and chain:
 * clients reconnect with the same certificates.
 */
interface ChainReading {
  readonly leaf: X509Certificate;
  readonly identity: ClientIdentity;
  /** Why the leaf cannot authenticate a client (its extended key usage), or null. */
  readonly usageProblem: string | null;
  readonly chain: X509Certificate[] | null;
  readonly chainFailure: ChainFailure | null;
  /** The verdict every connection presenting this chain gets once OpenSSL accepted it. */
  readonly valid: ClientCertificate | null;
}

const readings = new Map<string, ChainReading>();
const maxReadings = 10_000;

function readChain(peer: Linked, policy: ClientCertPolicy): ChainReading {
  // Node computes every link's fingerprint anyway; the chain as sent is the key
  let key = policy.key;
  for (let link: Linked | undefined = peer, n = 0; link?.fingerprint256 && n < 33; link = link.issuerCertificate === link ? undefined : link.issuerCertificate, n++) key += ` ${link.fingerprint256}`;
  const known = readings.get(key);
  if (known) return known;
  const leaf = new X509Certificate(peer.raw);
  const identity = identityOf(leaf);
  const usageProblem = (leaf.keyUsage ?? []).includes(clientAuthOid) ? null : `extended key usage is ${leaf.keyUsage?.join(', ') || 'absent'}, not clientAuth`;
  const chain = verifiedChain(leaf, peer, policy.caCerts);
  // CA certificates above the leaf up to the first one the site lists (its trust anchor)
  const depth = chain ? chain.findIndex((c, i) => i > 0 && policy.caCerts.some((ca) => ca.fingerprint256 === c.fingerprint256)) : -1;
  const chainFailure: ChainFailure | null =
    depth < 0
      ? { reason: 'bad_certificate', detail: 'the chain the client sent does not lead to a configured CA by valid signatures' }
      : depth > policy.verifyDepth
        ? { reason: 'chain_too_long', detail: `${depth} CA certificates above the leaf; clientAuth.verifyDepth is ${policy.verifyDepth}` }
        : null;
  const valid: ClientCertificate | null = usageProblem || chainFailure ? null : Object.freeze({ status: 'valid', identity, header: headerFor(identity), leaf, chain });
  const reading: ChainReading = { leaf, identity, usageProblem, chain, chainFailure, valid };
  // a chain not rebuilt yet (a resumed session before its intermediate was seen) may be later: not remembered
  if (chain) {
    readings.set(key, reading);
    if (readings.size > maxReadings) readings.delete(readings.keys().next().value as string);
  }
  return reading;
}

function judge(socket: TLSSocket, policy: ClientCertPolicy): ClientCertificate {
  const peer = socket.getPeerCertificate(true) as Linked | undefined;
  if (!peer?.raw) return none;
  const reading = readChain(peer, policy);
  const { leaf, identity } = reading;
  if (!socket.authorized || socket.authorizationError) {
    const code = failureCode(socket);
    // OpenSSL reports the last problem it met, so a server-only or expired certificate of a foreign
    // CA came out as wrong_key_usage or expired: the most fundamental failure is named first, and
    // nothing about a chain matters before it leads to a CA of the site (unless a resumed session
    // lost the intermediates that would show it does)
    const untrusted = reading.chain === null && !socket.isSessionReused();
    const reason = untrusted ? 'unknown_ca' : clientCertReasonOf(code);
    return { status: 'invalid', reason: reason === 'unknown_ca' && forgedUnder(leaf, policy.caCerts) ? 'bad_signature' : reason, detail: code, identity };
  }
  if (reading.usageProblem) return { status: 'invalid', reason: 'wrong_key_usage', detail: reading.usageProblem, identity };
  const chainKey = `${policy.key} ${identity.fingerprint}`;
  if (reading.chain === null && socket.isSessionReused()) {
    // A resumed session keeps the leaf, not the chain, and its intermediates are not known here:
    // fall back on what the full handshake that made the session found (sessions never resume
    // across policy changes); the revocation check then has no chain to work on.
    const earlier = chainVerdicts.get(chainKey);
    return earlier ? { status: 'invalid', ...earlier, identity } : { status: 'valid', identity, header: headerFor(identity), leaf, chain: null };
  }
  if (reading.chainFailure) {
    rememberChainFailure(chainKey, reading.chainFailure);
    return { status: 'invalid', ...reading.chainFailure, identity };
  }
  for (const ca of (reading.chain as X509Certificate[]).slice(1, -1)) if (!policy.caCerts.some((c) => c.fingerprint256 === ca.fingerprint256)) knownIntermediates.remember(ca);
  return reading.valid as ClientCertificate;
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
