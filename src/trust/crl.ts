import { createHash, type X509Certificate } from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { PemError, pemBlocks, x509, type PemBlock } from '../pki/index.js';

/** A CRL whose signature and issuer were checked against the CA certificate that issued it. */
export interface VerifiedCrl {
  /** The CA that signed it, by name and key (`issuerKeyOf`): a CA certificate re-issued with the same name and key keeps its CRLs. */
  readonly issuerKey: string;
  readonly thisUpdate: Date;
  /** Null when the CRL has none (RFC 5280 requires it; such a CRL is never stale by date). */
  readonly nextUpdate: Date | null;
  /** Revoked serial numbers, normalised by `normaliseSerial`. */
  readonly revoked: ReadonlySet<string>;
  /** Which of the issuer's certificates it covers (issuing distribution point, RFC 5280 §5.2.5); a CRL is no answer for the others. */
  readonly scope: CrlScope;
}

export interface CrlScope {
  readonly onlyUserCerts: boolean;
  readonly onlyCaCerts: boolean;
  /** The distribution point URIs it is the CRL of; null: every certificate of the issuer. */
  readonly distributionPoints: readonly string[] | null;
}

const wholeScope: CrlScope = Object.freeze({ onlyUserCerts: false, onlyCaCerts: false, distributionPoints: null });
const oids = { deltaCrlIndicator: '2.5.29.27', issuingDistributionPoint: '2.5.29.28', crlNumber: '2.5.29.20', authorityKeyIdentifier: '2.5.29.35' };

/** Why a CRL was not used; the message names the file or URL and the fix. */
export class CrlError extends Error {
  readonly code: 'unreadable' | 'malformed' | 'unknown_issuer' | 'bad_signature' | 'not_yet_valid' | 'unsupported';
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
    const isCrl = (b: { label: string }) => b.label === 'X509 CRL' || b.label === 'CRL';
    let blocks: PemBlock[];
    try {
      blocks = pemBlocks(bytes.toString('latin1'), source);
    } catch (err) {
      if (!(err instanceof PemError)) throw err;
      // a file overwritten in place can be read half written: the watcher reads it again when the writer is done
      throw new CrlError(
        'malformed',
        isCrl(err) && !err.blocks.some(isCrl)
          ? `${source} is PEM but holds no "BEGIN X509 CRL" block that ends (${err.detail}): the file is truncated, or was read while being written; give the complete CRL in PEM or DER`
          : err.message,
      );
    }
    const block = blocks.find(isCrl);
    if (!block) throw new CrlError('malformed', `${source} is PEM but holds no "BEGIN X509 CRL" block; give the CRL in PEM or DER`);
    der = Buffer.from(block.pem.replace(/-----(BEGIN|END) [A-Z0-9 ]+-----/g, '').replace(/\s+/g, ''), 'base64');
  }
  try {
    return new x509.X509Crl(der);
  } catch (err) {
    throw new CrlError('malformed', `${source} is not a CRL (${(err as Error).message}); give the CRL in PEM or DER`);
  }
}

const issuerKeys = new WeakMap<X509Certificate, string>();

/** A CA's name and public key, which is what a CRL's signature and issuer field bind it to. */
export function issuerKeyOf(ca: X509Certificate): string {
  let key = issuerKeys.get(ca);
  if (!key) {
    key = `${ca.subject}\n${createHash('sha256').update(ca.publicKey.export({ type: 'spki', format: 'der' })).digest('base64')}`;
    issuerKeys.set(ca, key);
  }
  return key;
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
    issuerKey: issuerKeyOf(issuer),
    thisUpdate: crl.thisUpdate,
    nextUpdate: crl.nextUpdate ?? null,
    revoked: new Set(crl.entries.map((e) => normaliseSerial(e.serialNumber))),
    scope: scopeOf(crl, source),
  };
}

/**
 * What the CRL covers, from its extensions. A delta CRL, an indirect CRL or
 * one partitioned by reason would make "not listed" mean "not listed here",
 * so they are refused rather than read as complete; so is any critical
 * extension this code does not know (RFC 5280 §5.2).
 */
function scopeOf(crl: x509.X509Crl, source: string): CrlScope {
  let scope = wholeScope;
  for (const ext of crl.extensions) {
    if (ext.type === oids.deltaCrlIndicator) throw new CrlError('unsupported', `${source} is a delta CRL; give the complete (base) CRL`);
    if (ext.type === oids.issuingDistributionPoint) {
      const idp = new pkijs.IssuingDistributionPoint({ schema: asn1js.fromBER(ext.value).result });
      if (idp.indirectCRL || idp.onlySomeReasons !== undefined || idp.onlyContainsAttributeCerts) {
        throw new CrlError('unsupported', `${source} is an indirect CRL or covers only some revocation reasons; give the CA's complete CRL`);
      }
      const names = Array.isArray(idp.distributionPoint) ? idp.distributionPoint : [];
      const uris = names.filter((n) => n.type === 6).map((n) => String(n.value));
      scope = { onlyUserCerts: idp.onlyContainsUserCerts, onlyCaCerts: idp.onlyContainsCACerts, distributionPoints: uris.length ? uris : null };
      continue;
    }
    if (ext.critical && ext.type !== oids.crlNumber && ext.type !== oids.authorityKeyIdentifier) {
      throw new CrlError('unsupported', `${source} has a critical extension ${ext.type} that Portcullis does not understand; the CRL cannot be used`);
    }
  }
  return scope;
}

/** Whether a CRL with this scope answers for `cert` (whose distribution points are `points`). */
export function crlCovers(scope: CrlScope, cert: X509Certificate, points: readonly string[]): boolean {
  if (scope.onlyUserCerts && cert.ca) return false;
  if (scope.onlyCaCerts && !cert.ca) return false;
  return scope.distributionPoints === null || points.some((p) => scope.distributionPoints?.includes(p));
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
