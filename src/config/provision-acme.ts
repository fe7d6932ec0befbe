import { existsSync } from 'node:fs';
import { certificateCovers, loadCertificatePair } from '../pki/index.js';
import { readCertificateBundle } from './certificate-bundle.js';
import { certificateSource } from './certificate-sources.js';
import type { ProvisionContext } from './provision-context.js';
import type { RawSite } from './schema.js';
import type { AcmeSource, CertificatePair } from './types.js';

/**
 * An `acme` source (the entry at `at`, `sites[i].certificates[j]`): the
 * certificate an ACME CA issued earlier, kept under dataDir, is served when
 * it is usable for every host; otherwise the site is pending (no certificate,
 * handshakes refused) until the ACME manager orders one. A stored certificate
 * that expired while the instance was down must not keep it from starting,
 * hence no config issue for it. Null when the entry has an issue.
 */
export function provisionAcme(certificates: RawSite['certificates'], hosts: readonly string[], at: string, ctx: ProvisionContext): { source: AcmeSource; served: CertificatePair | null } | null {
  const entry = certificates.find((c) => c.acme !== undefined) as RawSite['certificates'][number];
  const acme = entry.acme as NonNullable<typeof entry.acme>;
  if (certificates.length > 1 || entry.cert !== undefined || entry.key !== undefined || entry.internal) {
    ctx.issue(at, 'an acme source is the site\'s only certificate source; remove the other entries (or give those hosts their own site)');
    return null;
  }
  const wildcards = hosts.filter((h) => h.startsWith('*.'));
  if (wildcards.length > 0) {
    ctx.issue(`${at}.acme`, `ACME needs the dns-01 challenge for ${wildcards.join(', ')}, which Portcullis does not answer; list the names without wildcards, or serve them from files or internal: true in another site`);
    return null;
  }
  if (acme.challenge === 'http-01' && !ctx.hasHttpListener) {
    ctx.issue(`${at}.acme.challenge`, 'http-01 is answered by the plain-HTTP listener on port 80, which is not configured; add listen: {http: "0.0.0.0:80"} or use challenge: tls-alpn-01');
    return null;
  }
  let caPem: string | null = null;
  if (acme.ca !== undefined) {
    const bundle = readCertificateBundle(ctx, `${at}.acme.ca`, acme.ca, {
      unreadable: "the PEM CA certificate that signs the ACME server's own TLS certificate",
      empty: "the CA certificate of the ACME server's TLS in PEM",
    });
    if (!bundle.complete) return null;
    caPem = bundle.text;
  }
  const stored = storedCertificate(ctx.dataDir, hosts);
  const source: AcmeSource = { email: acme.email, directory: acme.directory, caPem, challenge: acme.challenge, names: hosts, storedProblem: stored.problem };
  return { source, served: stored.served };
}

/** The certificate ACME issued earlier, when it is usable for every host; else why not (null: none stored yet). */
function storedCertificate(dataDir: string, hosts: readonly string[]): { served: CertificatePair | null; problem: string | null } {
  const { files } = certificateSource.acme(dataDir, hosts);
  if (!existsSync(files.certFile)) return { served: null, problem: null };
  const loaded = loadCertificatePair(files.certFile, files.keyFile, 'server');
  if (!loaded.ok) return { served: null, problem: loaded.problems.map((p) => p.message).join('; ') };
  const uncovered = hosts.filter((h) => !certificateCovers(loaded.certificate.leaf, h));
  if (uncovered.length > 0) return { served: null, problem: `the stored certificate does not cover ${uncovered.join(', ')}` };
  return { served: loaded.certificate, problem: null };
}
