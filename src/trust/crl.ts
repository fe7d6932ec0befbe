import type { X509Certificate } from 'node:crypto';
import { x509 } from '../pki/index.js';

/** A CRL whose signature and issuer were checked against the CA certificate that issued it. */
export interface VerifiedCrl {
  /** SHA-256 fingerprint (Node's format) of the CA certificate that signed it. */
  readonly issuerFingerprint: string;
  readonly thisUpdate: Date;
  /** Null when the CRL has none (RFC 5280 requires it; such a CRL is never stale by date). */
  readonly nextUpdate: Date | null;
  /** Revoked serial numbers, normalised by `normaliseSerial`. */
  readonly revoked: ReadonlySet<string>;
}

/** Why a CRL was not used; the message names the file or URL and the fix. */
export class CrlError extends Error {
  readonly code: 'malformed' | 'unknown_issuer' | 'bad_signature' | 'not_yet_valid';
  constructor(code: CrlError['code'], message: string) {
    super(message);
    this.name = 'CrlError';
    this.code = code;
  }
}

/** Upper-case hex without leading zeros: the form both Node and @peculiar/x509 serials reduce to. */
export function normaliseSerial(hex: string): string {
  const s = hex.replace(/[^0-9a-f]/gi, '').toUpperCase().replace(/^0+/, '');
  return s || '0';
}

/** Accepts DER and PEM ("X509 CRL", as OpenSSL writes it, or "CRL", as some tools do). */
export function parseCrl(bytes: Buffer, source: string): x509.X509Crl {
  const text = bytes.subarray(0, 64).toString('latin1');
  let der: Buffer = bytes;
  if (text.includes('-----BEGIN')) {
    const m = /-----BEGIN (X509 )?CRL-----([\s\S]*?)-----END (X509 )?CRL-----/.exec(bytes.toString('latin1'));
    if (!m) throw new CrlError('malformed', `${source} is PEM but holds no "BEGIN X509 CRL" block; give the CRL in PEM or DER`);
    der = Buffer.from((m[2] as string).replace(/\s+/g, ''), 'base64');
  }
  try {
    return new x509.X509Crl(der);
  } catch (err) {
    throw new CrlError('malformed', `${source} is not a CRL (${(err as Error).message}); give the CRL in PEM or DER`);
  }
}

const subjectDer = new WeakMap<X509Certificate, Buffer>();

function subjectNameDer(cert: X509Certificate): Buffer {
  let der = subjectDer.get(cert);
  if (!der) {
    der = Buffer.from(new x509.X509Certificate(cert.raw).subjectName.toArrayBuffer());
    subjectDer.set(cert, der);
  }
  return der;
}

/**
 * Finds the CRL's issuer among `candidates` (by the DER of the name, then by
 * signature, so a CA re-keyed under the same name is told apart) and checks
 * the CRL: signed by that CA's key, thisUpdate not in the future (5 minutes
 * of clock skew allowed). Whether it is fresh (nextUpdate) is decided when
 * it is used, since an expired CRL still proves what it lists as revoked.
 */
export async function verifyCrl(crl: x509.X509Crl, candidates: readonly X509Certificate[], source: string, now = new Date()): Promise<VerifiedCrl> {
  const issuerName = Buffer.from(crl.issuerName.toArrayBuffer());
  const named = candidates.filter((c) => c.ca && subjectNameDer(c).equals(issuerName));
  if (named.length === 0) {
    throw new CrlError('unknown_issuer', `${source} is issued by ${crl.issuer}, which is not a CA of clientAuth.ca nor of the client's chain; list that CA in clientAuth.ca or remove the CRL`);
  }
  let issuer: X509Certificate | undefined;
  for (const c of named) {
    if (await crl.verify({ publicKey: new x509.X509Certificate(c.raw) }).catch(() => false)) {
      issuer = c;
      break;
    }
  }
  if (!issuer) throw new CrlError('bad_signature', `${source} names ${crl.issuer} as its issuer but that CA's key did not sign it; the CRL is forged or from a re-keyed CA`);
  if (crl.thisUpdate.getTime() > now.getTime() + 5 * 60_000) {
    throw new CrlError('not_yet_valid', `${source} takes effect only at ${crl.thisUpdate.toISOString()} (thisUpdate); check the clocks of the CA and this host`);
  }
  return {
    issuerFingerprint: issuer.fingerprint256,
    thisUpdate: crl.thisUpdate,
    nextUpdate: crl.nextUpdate ?? null,
    revoked: new Set(crl.entries.map((e) => normaliseSerial(e.serialNumber))),
  };
}

/** The http(s) CRL distribution point URLs of a certificate (others, e.g. ldap:, are never fetched). */
export function distributionPointsOf(cert: X509Certificate): string[] {
  const ext = new x509.X509Certificate(cert.raw).getExtension(x509.CRLDistributionPointsExtension);
  const urls: string[] = [];
  for (const point of ext?.distributionPoints ?? []) {
    for (const name of point.distributionPoint?.fullName ?? []) {
      const uri = name.uniformResourceIdentifier;
      if (uri && /^https?:\/\//i.test(uri)) urls.push(uri);
    }
  }
  return urls;
}
