import { createPublicKey } from 'node:crypto';
import { x509 } from './x509.js';

export type CsrRefusal = 'bad_csr' | 'weak_csr_key';

/** Why a certificate request was not accepted; `reason` is a reason code of the catalog. */
export class CsrError extends Error {
  constructor(
    readonly reason: CsrRefusal,
    message: string,
  ) {
    super(message);
    this.name = 'CsrError';
  }
}

const pemRequest = /-----BEGIN (NEW )?CERTIFICATE REQUEST-----([\s\S]*?)-----END (NEW )?CERTIFICATE REQUEST-----/;
const acceptedCurves = new Set(['prime256v1', 'secp384r1']);

/**
 * Reads a PKCS#10 certificate request (PEM or DER) and returns the public key
 * it proves possession of: the request's signature must verify with that key.
 * Nothing else of the request is used — its subject and names are ignored, so
 * whoever writes it cannot choose what gets certified. On any input it
 * resolves or rejects with a `CsrError` (bad_csr, weak_csr_key), never another error.
 */
export async function requestedPublicKey(body: Buffer): Promise<x509.PublicKey> {
  const pem = pemRequest.exec(body.toString('latin1'));
  const der = pem ? Buffer.from((pem[2] as string).replace(/\s+/g, ''), 'base64') : body;
  let csr: x509.Pkcs10CertificateRequest;
  let publicKey: x509.PublicKey;
  try {
    csr = new x509.Pkcs10CertificateRequest(der);
    // a lazy getter: the SubjectPublicKeyInfo is parsed only here, and throws when it does not parse
    publicKey = csr.publicKey;
  } catch {
    throw new CsrError('bad_csr', 'the body is not a PKCS#10 certificate request with a readable public key; send the output of openssl req -new (PEM or DER)');
  }
  const key = keyDescription(publicKey);
  if (!key.ok) throw new CsrError('weak_csr_key', `the request's key is ${key.what}; use ECDSA P-256 or P-384, Ed25519, or RSA of at least 2048 bits`);
  let verified = false;
  try {
    verified = await csr.verify();
  } catch {
    verified = false;
  }
  if (!verified) throw new CsrError('bad_csr', 'the request signature does not verify with its key; create the request with the private key it names');
  return publicKey;
}

function keyDescription(publicKey: x509.PublicKey): { ok: boolean; what: string } {
  let key;
  try {
    key = createPublicKey({ key: Buffer.from(publicKey.rawData), format: 'der', type: 'spki' });
  } catch {
    return { ok: false, what: 'of a kind this CA cannot read' };
  }
  const details = key.asymmetricKeyDetails ?? {};
  switch (key.asymmetricKeyType) {
    case 'ec':
      return { ok: acceptedCurves.has(details.namedCurve ?? ''), what: `ECDSA on ${details.namedCurve}` };
    case 'rsa':
      return { ok: (details.modulusLength ?? 0) >= 2048, what: `RSA of ${details.modulusLength} bits` };
    case 'ed25519':
      return { ok: true, what: 'Ed25519' };
    default:
      return { ok: false, what: String(key.asymmetricKeyType) };
  }
}
