import type { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { x509 } from '../pki/index.js';
import { CrlError, parseCrl, type RevocationPolicy } from '../trust/index.js';
import { unreadableReason, type ProvisionContext } from './provision-context.js';
import type { RawClientAuth } from './schema.js';

/**
 * The revocation part of a site's `clientAuth` (at `at`): CRL files and URLs,
 * OCSP. Null when neither is configured (the deny list applies anyway).
 * `caCerts` is the site's client CA list, or null when that list has a
 * problem of its own (reported already): a CRL's issuer is then not judged
 * against a partial list.
 *
 * CRL files are read here so a typo is a config error, not a silent
 * "revocation unavailable" later; their signatures and freshness are checked
 * by the running instance, which re-reads them when they change.
 */
export function provisionRevocation(raw: RawClientAuth, at: string, ctx: ProvisionContext, caCerts: readonly X509Certificate[] | null): RevocationPolicy | null {
  if (raw.ocspResponder !== undefined && !raw.ocsp) ctx.issue(`${at}.ocspResponder`, 'ocspResponder is used only with ocsp: true; add ocsp: true or remove it');
  if (raw.crl === undefined && !raw.ocsp) return null;
  const crls = raw.crl ?? [];
  return {
    crls: crls.flatMap((entry, k) => provisionCrl(entry, `${at}.crl[${k}]`, ctx, caCerts)),
    distributionPoints: raw.crl !== undefined,
    ocsp: raw.ocsp,
    ocspResponder: raw.ocspResponder ?? null,
    onUnavailable: raw.onRevocationUnavailable,
  };
}

/** One `crl` entry: an http(s) URL, or a file of a CA in the list; none when it has an issue. */
function provisionCrl(entry: string, at: string, ctx: ProvisionContext, caCerts: readonly X509Certificate[] | null): RevocationPolicy['crls'] {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(entry)) {
    if (!/^https?:\/\//i.test(entry)) {
      ctx.issue(at, `${entry} is not an http(s) URL; CRLs are fetched over http or https only (or give a file path)`);
      return [];
    }
    try {
      return [{ kind: 'url', location: new URL(entry).href }];
    } catch {
      ctx.issue(at, `${entry} is not a valid URL`);
      return [];
    }
  }
  const path = ctx.file(entry);
  try {
    const crl = parseCrl(readFileSync(path), path);
    const issuerName = Buffer.from(crl.issuerName.toArrayBuffer());
    const issuerKnown = caCerts === null || caCerts.some((c) => Buffer.from(new x509.X509Certificate(c.raw).subjectName.toArrayBuffer()).equals(issuerName));
    if (!issuerKnown) ctx.issue(at, `${path} is issued by ${crl.issuer}, which is not in clientAuth.ca; list the CA that signs it in clientAuth.ca, or remove the CRL`);
  } catch (err) {
    ctx.issue(at, err instanceof CrlError ? err.message : `cannot read ${path} (${unreadableReason(err)}); give the CRL file (PEM or DER) of your client CA`);
    return [];
  }
  return [{ kind: 'file', location: path }];
}
