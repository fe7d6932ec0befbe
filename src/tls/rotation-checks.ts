import { X509Certificate } from 'node:crypto';
import { rootCertificates } from 'node:tls';
import type { CertificatePair, Config, Site } from '../config/index.js';
import { pemBlocks } from '../pki/index.js';

let publicRoots: ReadonlySet<string> | null = null;

/** Subjects of the roots Node trusts (Mozilla's): a chain whose last certificate one of them issued is complete. */
function publicRootSubjects(): ReadonlySet<string> {
  publicRoots ??= new Set(rootCertificates.map((pem) => new X509Certificate(pem).subject));
  return publicRoots;
}

/** The last certificate of a chain file. */
function topOf(chainPem: string): X509Certificate {
  const blocks = pemBlocks(chainPem).filter((b) => b.label === 'CERTIFICATE');
  return new X509Certificate((blocks.at(-1) as { pem: string }).pem);
}

/**
 * Checks that only matter when a certificate replaces one already served
 * (load-time checks — key match, order, validity, usage, key strength, host
 * coverage — have run on both already):
 * - the new certificate is valid for at least `tls.rotationMinValidity` more,
 *   so a rotation to an almost expired certificate (a stale file copied
 *   back) is refused;
 * - its chain reaches as far as the served one did: ending at a self-signed
 *   root, at a certificate a public root issued, or at a certificate of the
 *   same issuer as the served chain's last one. A chain that stops earlier
 *   lacks an intermediate, which clients without it in their cache refuse.
 * Returns the problems, each naming the site and certificate and the fix.
 */
export function checkRotation(served: Config, next: Config, now = Date.now()): string[] {
  const problems: string[] = [];
  for (const { before, pair, where } of replacements(served, next)) {
    const left = new Date(pair.leaf.validTo).getTime() - now;
    if (left < next.tls.rotationMinValidityMs) {
      problems.push(`${where}: the new certificate expires at ${new Date(pair.leaf.validTo).toISOString()}, in less than tls.rotationMinValidity; install a fresher certificate`);
    }
    const top = topOf(pair.chainPem);
    const complete = top.subject === top.issuer || publicRootSubjects().has(top.issuer) || before.certificates.some((c) => topOf(c.chainPem).issuer === top.issuer);
    if (!complete) {
      problems.push(
        `${where}: the new chain ends at ${top.subject.split('\n').join(', ')}, issued by ${top.issuer.split('\n').join(', ')}, where the served chain ends higher; append the missing intermediate certificate(s) to ${pair.certFile} (moving to another private CA: end the file with that CA's root)`,
      );
    }
  }
  return problems;
}

export interface Replacement {
  /** The site as served. */
  readonly before: Site;
  readonly site: Site;
  /** A certificate of `site` that `before` does not serve. */
  readonly pair: CertificatePair;
  readonly where: string;
}

/**
 * The certificates of sites that stay which the served config does not have
 * yet: what a reload rotates. A site that served none (an ACME site before
 * its first certificate) has nothing to rotate from.
 */
export function* replacements(served: Config, next: Config): Generator<Replacement> {
  for (const [i, site] of next.sites.entries()) {
    const before = served.sites.find((s) => s.id === site.id);
    if (!before || before.certificates.length === 0) continue;
    const known = new Set(before.certificates.map((c) => c.leaf.fingerprint256));
    for (const [j, pair] of site.certificates.entries()) {
      if (!known.has(pair.leaf.fingerprint256)) yield { before, site, pair, where: `sites[${i}].certificates[${j}] (${pair.certFile})` };
    }
  }
}
