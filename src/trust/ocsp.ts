import { X509Certificate, constants, createHash, randomBytes, verify as verifySignature, webcrypto, type KeyObject } from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { FetchError, fetchBounded, type FetchLimits } from './fetch-bounded.js';
import { rfc4514 } from './identity.js';

/** A verified OCSP answer about one certificate (RFC 6960 §4.2.1). */
export interface OcspAnswer {
  readonly status: 'good' | 'revoked' | 'unknown';
  readonly thisUpdate: Date;
  /** Null when the responder omitted it ("newer information is always available", RFC 5019 §2.2.4). */
  readonly nextUpdate: Date | null;
  readonly revokedAt: Date | null;
  /** The CRLReason name ('keyCompromise' …) when the responder gave one. */
  readonly revocationReason: string | null;
  /** The whole OCSPResponse as received, for stapling. */
  readonly der: Buffer;
}

/**
 * Why no usable answer came from a responder. `code` is a stable reason for
 * logs and metrics; the message names the responder or the certificate and what was wrong.
 */
export class OcspError extends Error {
  readonly code: 'unreachable' | 'unsuccessful' | 'malformed' | 'bad_signature' | 'unauthorized_responder' | 'wrong_certificate' | 'stale' | 'nonce_mismatch';
  constructor(code: OcspError['code'], message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'OcspError';
    this.code = code;
  }
}

const oid = {
  ocspBasic: '1.3.6.1.5.5.7.48.1.1',
  ocspNonce: '1.3.6.1.5.5.7.48.1.2',
  ocspSigning: '1.3.6.1.5.5.7.3.9',
  rsaPss: '1.2.840.113549.1.1.10',
  mgf1: '1.2.840.113549.1.1.8',
} as const;

/** OCSPResponseStatus (RFC 6960 §4.2.1); 4 is unused. */
const responseStatusNames: Record<number, string> = { 0: 'successful', 1: 'malformedRequest', 2: 'internalError', 3: 'tryLater', 5: 'sigRequired', 6: 'unauthorized' };

/** CRLReason (RFC 5280 §5.3.1); 7 is unused. */
const reasonNames: Record<number, string> = {
  0: 'unspecified', 1: 'keyCompromise', 2: 'cACompromise', 3: 'affiliationChanged', 4: 'superseded',
  5: 'cessationOfOperation', 6: 'certificateHold', 8: 'removeFromCRL', 9: 'privilegeWithdrawn', 10: 'aACompromise',
};

/** Hashes a CertID may use, by OID; SHA-1 is fine here: it names a certificate, it does not sign anything. */
const certIdHashes: Record<string, string> = {
  '1.3.14.3.2.26': 'SHA-1',
  '2.16.840.1.101.3.4.2.1': 'SHA-256',
  '2.16.840.1.101.3.4.2.2': 'SHA-384',
  '2.16.840.1.101.3.4.2.3': 'SHA-512',
};

/**
 * Response signature algorithms we verify, by OID, with the key type they
 * need. SHA-1 signatures (sha1WithRSAEncryption, ecdsa-with-SHA1) are refused:
 * a collision would let a responder's signature cover a forged answer.
 */
const signatureAlgorithms: Record<string, { readonly hash: string | null; readonly keys: readonly string[] }> = {
  '1.2.840.113549.1.1.11': { hash: 'sha256', keys: ['rsa'] },
  '1.2.840.113549.1.1.12': { hash: 'sha384', keys: ['rsa'] },
  '1.2.840.113549.1.1.13': { hash: 'sha512', keys: ['rsa'] },
  '1.2.840.10045.4.3.2': { hash: 'sha256', keys: ['ec'] },
  '1.2.840.10045.4.3.3': { hash: 'sha384', keys: ['ec'] },
  '1.2.840.10045.4.3.4': { hash: 'sha512', keys: ['ec'] },
  '1.3.101.112': { hash: null, keys: ['ed25519'] },
  '1.3.101.113': { hash: null, keys: ['ed448'] },
};
const pssHashes: Record<string, string> = { '2.16.840.1.101.3.4.2.1': 'sha256', '2.16.840.1.101.3.4.2.2': 'sha384', '2.16.840.1.101.3.4.2.3': 'sha512' };

/** Clock skew allowed between us and the responder on thisUpdate. */
const maxFutureSkewMs = 5 * 60_000;
/** How old an answer without nextUpdate may be (RFC 5019 §2.2.4: newer information is always available). */
export const maxAgeWithoutNextUpdateMs = 3_600_000;

// pkijs 4 installs a global engine from globalThis.crypto when imported; ours is passed
// explicitly, so this module does not depend on (or change) that process-wide setting.
// Node's webcrypto is the standard Crypto interface that pkijs types as lib.dom's Crypto
type DomCrypto = pkijs.CryptoEngineParameters['crypto'];
const engine = new pkijs.CryptoEngine({ name: 'node', crypto: webcrypto as unknown as DomCrypto });

/**
 * The first http(s) OCSP responder named in the certificate's authority
 * information access extension; null when there is none. Node quotes a value
 * holding special characters as a JSON string (CVE-2021-44532), which is undone here.
 */
export function ocspResponderOf(cert: X509Certificate): string | null {
  for (const line of (cert.infoAccess ?? '').split('\n')) {
    if (!line.startsWith('OCSP - URI:')) continue;
    let uri = line.slice('OCSP - URI:'.length);
    if (uri.startsWith('"')) {
      try {
        uri = JSON.parse(uri) as string;
      } catch {
        continue;
      }
    }
    if (/^https?:\/\//i.test(uri)) return uri;
  }
  return null;
}

function pkiCertificate(cert: X509Certificate): pkijs.Certificate {
  return pkijs.Certificate.fromBER(cert.raw);
}

/** The CertID of `cert` under `issuer`, hashed with `hash` (a pkijs/WebCrypto name). */
async function certIdOf(cert: pkijs.Certificate, issuer: pkijs.Certificate, hash: string): Promise<pkijs.CertID> {
  const id = new pkijs.CertID();
  await id.createForCertificate(cert, { hashAlgorithm: hash, issuerCertificate: issuer }, engine);
  return id;
}

/** SHA-1 of the subjectPublicKey BIT STRING's value: the key identity of a responderID byKey (RFC 6960 §4.2.1). */
function keyHashOf(cert: pkijs.Certificate): Buffer {
  return createHash('sha1').update(cert.subjectPublicKeyInfo.subjectPublicKey.valueBlock.valueHexView).digest();
}

/** True when the responderID (byName or byKey) names `cert`. */
function responderIdNames(responderId: unknown, cert: pkijs.Certificate): boolean {
  if (responderId instanceof pkijs.RelativeDistinguishedNames) return responderId.isEqual(cert.subject);
  if (responderId instanceof asn1js.OctetString) return keyHashOf(cert).equals(responderId.valueBlock.valueHexView);
  return false;
}

/** The DER of each certificate in BasicOCSPResponse.certs, as received (re-encoding could change what a signature covers). */
function embeddedCertificates(basic: asn1js.AsnType): Buffer[] {
  const fields = (basic as asn1js.Sequence).valueBlock.value;
  const tagged = fields[3];
  if (!tagged || tagged.idBlock.tagClass !== 3 || tagged.idBlock.tagNumber !== 0) return [];
  const list = (tagged as asn1js.Constructed).valueBlock.value[0] as asn1js.Sequence | undefined;
  return (list?.valueBlock.value ?? []).map((c) => Buffer.from(c.valueBeforeDecodeView));
}

/** Verifies the response signature over the DER of tbsResponseData with `key`; the algorithm comes from the response and must suit the key. */
function signatureVerifies(tbs: Uint8Array, signature: Uint8Array, algorithm: pkijs.AlgorithmIdentifier, key: KeyObject): boolean {
  const keyType = key.asymmetricKeyType ?? '';
  if (algorithm.algorithmId === oid.rsaPss) {
    if (keyType !== 'rsa' && keyType !== 'rsa-pss') return false;
    const params = new pkijs.RSASSAPSSParams({ schema: algorithm.algorithmParams });
    // RFC 4055 defaults are SHA-1 everywhere; only SHA-2 with a matching MGF1 hash is accepted
    const hash = pssHashes[params.hashAlgorithm.algorithmId];
    const mgf = params.maskGenAlgorithm;
    const mgfHash = mgf.algorithmId === oid.mgf1 ? new pkijs.AlgorithmIdentifier({ schema: mgf.algorithmParams }).algorithmId : '';
    if (!hash || pssHashes[mgfHash] !== hash) throw new OcspError('bad_signature', `the response is signed with RSASSA-PSS over ${params.hashAlgorithm.algorithmId} / MGF ${mgfHash || mgf.algorithmId}; only SHA-2 with a matching MGF1 hash is accepted`);
    return verifySignature(hash, tbs, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: params.saltLength }, signature);
  }
  const known = signatureAlgorithms[algorithm.algorithmId];
  if (!known) throw new OcspError('bad_signature', `the response is signed with algorithm ${algorithm.algorithmId}, which is not accepted (SHA-1 and unknown algorithms are refused); the responder must sign with SHA-256 or better`);
  if (!known.keys.includes(keyType)) return false;
  return verifySignature(known.hash, tbs, key, signature);
}

/** Why `delegate` may not answer for certificates of `issuer` (RFC 6960 §4.2.2.2), or null when it may. */
function delegateProblem(delegate: X509Certificate, issuer: X509Certificate, now: Date): string | null {
  if (!delegate.checkIssued(issuer) || !delegate.verify(issuer.publicKey)) return 'it is not issued and signed by the certificate\'s issuer';
  if (!(delegate.keyUsage ?? []).includes(oid.ocspSigning)) return 'it lacks the OCSPSigning extended key usage (1.3.6.1.5.5.7.3.9)';
  if (now < new Date(delegate.validFrom) || now > new Date(delegate.validTo)) return `it is valid only from ${delegate.validFrom} to ${delegate.validTo}`;
  return null;
}

const subjectOf = (cert: X509Certificate): string => rfc4514(cert.subject);

/** The certStatus CHOICE of a SingleResponse: good [0] NULL, revoked [1] RevokedInfo, unknown [2] NULL. */
function statusOf(certStatus: asn1js.AsnType): Pick<OcspAnswer, 'status' | 'revokedAt' | 'revocationReason'> {
  const { tagClass, tagNumber } = certStatus.idBlock;
  if (tagClass === 3 && tagNumber === 0) return { status: 'good', revokedAt: null, revocationReason: null };
  if (tagClass === 3 && tagNumber === 2) return { status: 'unknown', revokedAt: null, revocationReason: null };
  if (tagClass === 3 && tagNumber === 1 && certStatus instanceof asn1js.Constructed) {
    const [time, reason] = certStatus.valueBlock.value;
    if (!(time instanceof asn1js.GeneralizedTime)) throw new OcspError('malformed', 'the revoked status carries no revocation time');
    let revocationReason: string | null = null;
    if (reason instanceof asn1js.Constructed && reason.idBlock.tagClass === 3 && reason.idBlock.tagNumber === 0) {
      const value = reason.valueBlock.value[0];
      if (value instanceof asn1js.Enumerated) revocationReason = reasonNames[value.valueBlock.valueDec] ?? `reason ${value.valueBlock.valueDec}`;
    }
    return { status: 'revoked', revokedAt: time.toDate(), revocationReason };
  }
  throw new OcspError('malformed', `the certificate status has an unexpected tag [${tagNumber}] (class ${tagClass})`);
}

function parseBasic(der: Buffer): { basic: pkijs.BasicOCSPResponse; certs: Buffer[] } {
  let response: pkijs.OCSPResponse;
  try {
    response = pkijs.OCSPResponse.fromBER(der);
  } catch (err) {
    throw new OcspError('malformed', `the answer (${der.length} bytes) is not an OCSPResponse: ${(err as Error).message}`, { cause: err });
  }
  const status = response.responseStatus.valueBlock.valueDec;
  if (status !== 0) throw new OcspError('unsuccessful', `the responder answered ${responseStatusNames[status] ?? `status ${status}`}`);
  const bytes = response.responseBytes;
  if (!bytes) throw new OcspError('malformed', 'the answer is successful but carries no response');
  if (bytes.responseType !== oid.ocspBasic) throw new OcspError('malformed', `the response type is ${bytes.responseType}, not a basic OCSP response (${oid.ocspBasic})`);
  const asn1 = asn1js.fromBER(bytes.response.valueBlock.valueHexView);
  if (asn1.offset === -1) throw new OcspError('malformed', `the basic OCSP response does not parse: ${asn1.result.error}`);
  try {
    return { basic: new pkijs.BasicOCSPResponse({ schema: asn1.result }), certs: embeddedCertificates(asn1.result) };
  } catch (err) {
    throw new OcspError('malformed', `the basic OCSP response does not parse: ${(err as Error).message}`, { cause: err });
  }
}

async function verify(der: Buffer, cert: X509Certificate, issuer: X509Certificate, now: Date, nonce: Buffer | undefined): Promise<OcspAnswer> {
  const { basic, certs } = parseBasic(der);
  const data = basic.tbsResponseData;
  const subject = pkiCertificate(cert);
  const issuerPki = pkiCertificate(issuer);

  // 1. the SingleResponse about our certificate: serial, issuer name hash and issuer key hash all match
  const ids = new Map<string, pkijs.CertID>();
  let single: pkijs.SingleResponse | undefined;
  for (const candidate of data.responses) {
    const hash = certIdHashes[candidate.certID.hashAlgorithm.algorithmId];
    if (!hash) continue;
    let ours = ids.get(hash);
    if (!ours) ids.set(hash, (ours = await certIdOf(subject, issuerPki, hash)));
    if (candidate.certID.isEqual(ours)) {
      single = candidate;
      break;
    }
  }
  if (!single) {
    throw new OcspError('wrong_certificate', `the response (${data.responses.length} answer(s)) says nothing about certificate serial ${cert.serialNumber} of ${subjectOf(issuer)}`);
  }

  // 2. who signed: the issuer itself, or a responder it delegated to (RFC 6960 §4.2.2.2)
  const signers: { key: KeyObject; name: string }[] = [];
  const refused: string[] = [];
  if (responderIdNames(data.responderID, issuerPki)) signers.push({ key: issuer.publicKey, name: `the issuer ${subjectOf(issuer)}` });
  for (const raw of certs) {
    const delegatePki = pkijs.Certificate.fromBER(raw);
    if (!responderIdNames(data.responderID, delegatePki)) continue;
    const delegate = new X509Certificate(raw);
    if (delegate.fingerprint256 === issuer.fingerprint256) continue; // the issuer itself, already a candidate
    const problem = delegateProblem(delegate, issuer, now);
    if (problem) refused.push(`${subjectOf(delegate)}: ${problem}`);
    else signers.push({ key: delegate.publicKey, name: `delegated responder ${subjectOf(delegate)}` });
  }
  if (signers.length === 0) {
    throw new OcspError(
      'unauthorized_responder',
      refused.length > 0
        ? `the response is signed by a responder not authorized for ${subjectOf(issuer)}: ${refused.join('; ')}`
        : `the response is signed by neither ${subjectOf(issuer)} nor a delegated responder certificate included in it`,
    );
  }

  // 3. the signature over tbsResponseData, as received
  const signature = basic.signature.valueBlock.valueHexView;
  if (!signers.some((s) => signatureVerifies(data.tbsView, signature, basic.signatureAlgorithm, s.key))) {
    throw new OcspError('bad_signature', `the response signature does not verify with the key of ${signers.map((s) => s.name).join(' or ')}`);
  }

  // 4. the nonce: a response without one is accepted (RFC 8954 §2.1: responders may use pre-produced answers)
  if (nonce) {
    const echoed = data.responseExtensions?.find((e) => e.extnID === oid.ocspNonce);
    if (echoed) {
      const value = Buffer.from(echoed.extnValue.valueBlock.valueHexView);
      if (!value.equals(nonceValue(nonce)) && !value.equals(nonce)) throw new OcspError('nonce_mismatch', 'the response carries a nonce other than the one sent: it may be a replay');
    }
  }

  // 5. freshness (RFC 6960 §3.2 (5), (6))
  const thisUpdate = single.thisUpdate;
  const nextUpdate = single.nextUpdate ?? null;
  if (thisUpdate.getTime() > now.getTime() + maxFutureSkewMs) {
    throw new OcspError('stale', `the response takes effect only at ${thisUpdate.toISOString()} (thisUpdate); check the clocks of the responder and this host`);
  }
  if (nextUpdate && nextUpdate.getTime() <= now.getTime()) throw new OcspError('stale', `the response expired at ${nextUpdate.toISOString()} (nextUpdate)`);
  // Without nextUpdate nothing bounds how long an answer may be replayed (requests carry no nonce by
  // default, and responders are often plain http): an old "good" could hide a revocation.
  if (!nextUpdate && thisUpdate.getTime() < now.getTime() - maxAgeWithoutNextUpdateMs) {
    throw new OcspError('stale', `the response dates from ${thisUpdate.toISOString()} (thisUpdate) and has no nextUpdate; answers without nextUpdate are used for at most an hour`);
  }

  return { ...statusOf(single.certStatus as asn1js.AsnType), thisUpdate, nextUpdate, der };
}

/** The extnValue of a nonce extension: an OCTET STRING holding the nonce (RFC 8954 §2.1). */
function nonceValue(nonce: Buffer): Buffer {
  return Buffer.from(new asn1js.OctetString({ valueHex: nonce }).toBER());
}

/**
 * Checks an OCSPResponse about `cert`, issued by `issuer`: successful status,
 * a basic response with a SingleResponse for exactly this certificate, signed
 * by the issuer or by a delegated responder the issuer certified for OCSP
 * signing, fresh at `now`, and carrying `nonce` when one was sent and the
 * responder echoes one. Throws an OcspError, whatever the bytes; safe to call concurrently.
 */
export async function verifyOcspResponse(der: Buffer, cert: X509Certificate, issuer: X509Certificate, now = new Date(), nonce?: Buffer): Promise<OcspAnswer> {
  try {
    return await verify(der, cert, issuer, now, nonce);
  } catch (err) {
    if (err instanceof OcspError) throw err;
    throw new OcspError('malformed', `the response could not be read: ${(err as Error).message}`, { cause: err });
  }
}

/** A DER OCSPRequest for one certificate (SHA-1 CertID, which every responder supports), with an optional nonce. */
async function buildRequest(cert: X509Certificate, issuer: X509Certificate, nonce: Buffer | undefined): Promise<Buffer> {
  const request = new pkijs.OCSPRequest();
  request.tbsRequest.requestList = [new pkijs.Request({ reqCert: await certIdOf(pkiCertificate(cert), pkiCertificate(issuer), 'SHA-1') })];
  if (nonce) {
    const value = new Uint8Array(nonceValue(nonce)).buffer;
    request.tbsRequest.requestExtensions = [new pkijs.Extension({ extnID: oid.ocspNonce, critical: false, extnValue: value })];
  }
  return Buffer.from(request.toSchema(true).toBER());
}

/**
 * Asks `url` about `cert` (RFC 6960 over HTTP POST, RFC 5019) and verifies
 * the answer with `verifyOcspResponse`. Bounded by `limits`; a transport
 * failure is an OcspError 'unreachable' whose cause is the FetchError. With
 * `nonce: true` a 32-byte nonce is sent (RFC 8954); the default sends none,
 * so that responders can serve pre-produced answers. Safe to call concurrently.
 */
export async function queryOcsp(cert: X509Certificate, issuer: X509Certificate, url: string, limits: FetchLimits, opts: { nonce?: boolean } = {}): Promise<OcspAnswer> {
  const nonce = opts.nonce ? randomBytes(32) : undefined;
  let body: Buffer;
  try {
    body = await buildRequest(cert, issuer, nonce);
  } catch (err) {
    throw new OcspError('malformed', `no OCSP request could be built for ${subjectOf(cert)}: ${(err as Error).message}`, { cause: err });
  }
  let der: Buffer;
  try {
    der = await fetchBounded(url, limits, { method: 'POST', body, contentType: 'application/ocsp-request', accept: 'application/ocsp-response' });
  } catch (err) {
    if (err instanceof FetchError) throw new OcspError('unreachable', err.message, { cause: err });
    throw new OcspError('unreachable', `${url} could not be asked: ${(err as Error).message}`, { cause: err });
  }
  try {
    return await verifyOcspResponse(der, cert, issuer, new Date(), nonce);
  } catch (err) {
    // name the responder in every message
    const e = err as OcspError;
    throw new OcspError(e.code, `OCSP responder ${url}: ${e.message}`, { cause: e.cause });
  }
}
