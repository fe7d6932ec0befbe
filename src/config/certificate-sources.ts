import { ensureIssuedCertificate, ensureLocalCa, internalLifetimeDays } from '../pki/index.js';
import { acmeCertificateFiles, caFolder, internalCertificateFiles, quickstartCertificateFiles, type CertificateFiles } from '../state/index.js';

/**
 * Where a site's certificate comes from. Every source ends in a pair of PEM
 * files at a known place, which loading reads and the file watcher watches the
 * same way whatever the source; the sources differ only in who writes the
 * files, and when:
 * - `file`: the operator (or their tooling) at the paths the config names;
 *   never written by Portcullis.
 * - `internal`: the built-in CA under dataDir, before every load and at the
 *   hourly renewal, once two thirds of the lifetime have passed.
 * - `quickstart`: the same, for the zero-config localhost site.
 * - `acme`: the ACME manager, once an ACME CA issued one; until then the site
 *   is pending (handshakes refused).
 */
export type CertificateSource = { readonly kind: 'file'; readonly files: CertificateFiles } | LocalSource | { readonly kind: 'acme'; readonly files: CertificateFiles; readonly hosts: readonly string[] };

/** The sources the built-in CA issues, and so `issueFromLocalCa` keeps fresh. */
interface LocalSource {
  readonly kind: 'internal' | 'quickstart';
  readonly files: CertificateFiles;
  readonly hosts: readonly string[];
}

export const certificateSource = {
  file: (certFile: string, keyFile: string): CertificateSource => ({ kind: 'file', files: { certFile, keyFile } }),
  /** Named after the site's first host, as the config normalises it. */
  internal: (dataDir: string, hosts: readonly string[]): LocalSource => ({ kind: 'internal', files: internalCertificateFiles(dataDir, hosts[0] as string), hosts }),
  quickstart: (dataDir: string, hosts: readonly string[]): LocalSource => ({ kind: 'quickstart', files: quickstartCertificateFiles(dataDir), hosts }),
  acme: (dataDir: string, hosts: readonly string[]): CertificateSource => ({ kind: 'acme', files: acmeCertificateFiles(dataDir, hosts[0] as string), hosts }),
};

/**
 * Issues, or renews once two thirds of their lifetime have passed, the
 * certificates of `sources` from the built-in CA under dataDir (made on first
 * use). Returns the certificate files it wrote.
 */
export async function issueFromLocalCa(dataDir: string, sources: readonly LocalSource[]): Promise<string[]> {
  if (sources.length === 0) return [];
  const ca = await ensureLocalCa(caFolder(dataDir));
  const written: string[] = [];
  for (const { files, hosts } of sources) {
    if (await ensureIssuedCertificate(ca, { ...files, hosts, lifetimeDays: internalLifetimeDays })) written.push(files.certFile);
  }
  return written;
}
