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

/** The certificates of a pair's chain, leaf first (read and checked by the config load already). */
function chainOf(pair: CertificatePair): X509Certificate[] {
  return pemBlocks(pair.chainPem, pair.certFile)
    .filter((b) => b.label === 'CERTIFICATE')
    .map((b) => new X509Certificate(b.pem));
}

/** What a handshake sends: the fingerprints of the whole chain, so a changed intermediate counts as a change. */
const servedChainOf = (pair: CertificatePair): string =>
  chainOf(pair)
    .map((c) => c.fingerprint256)
    .join(' ');

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
  for (const { before, pair, where, newLeaf } of replacements(served, next)) {
    const left = new Date(pair.leaf.validTo).getTime() - now;
    // a leaf already served is no stale file copied back: its chain may still be mended when it is close to expiry
    if (newLeaf && left < next.tls.rotationMinValidityMs) {
      problems.push(`${where}: the new certificate expires at ${new Date(pair.leaf.validTo).toISOString()}, in less than tls.rotationMinValidity; install a fresher certificate`);
    }
    const top = chainOf(pair).at(-1) as X509Certificate;
    const complete = top.subject === top.issuer || publicRootSubjects().has(top.issuer) || before.certificates.some((c) => (chainOf(c).at(-1) as X509Certificate).issuer === top.issuer);
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
  /** A certificate chain of `site` that `before` does not serve: a new leaf, or a served leaf with other intermediates. */
  readonly pair: CertificatePair;
  /** False when `before` serves this leaf already, with another chain. */
  readonly newLeaf: boolean;
  readonly where: string;
}

/**
 * The certificate chains of sites that stay which the served config does
 * not serve yet: what a reload rotates. The whole chain counts, not only
 * the leaf: a file rewritten with the same leaf and an intermediate missing
 * (cut off, or a renewal tool that wrote the leaf alone) changes what
 * clients get and must pass the same checks. A site that served none (an
 * ACME site before its first certificate) has nothing to rotate from.
 */
export function* replacements(served: Config, next: Config): Generator<Replacement> {
  for (const [i, site] of next.sites.entries()) {
    const before = served.sites.find((s) => s.id === site.id);
    if (!before || before.certificates.length === 0) continue;
    const chains = new Set(before.certificates.map(servedChainOf));
    const leaves = new Set(before.certificates.map((c) => c.leaf.fingerprint256));
    for (const [j, pair] of site.certificates.entries()) {
      if (!chains.has(servedChainOf(pair))) yield { before, site, pair, newLeaf: !leaves.has(pair.leaf.fingerprint256), where: `sites[${i}].certificates[${j}] (${pair.certFile})` };
    }
  }
}
