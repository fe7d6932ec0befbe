import { existsSync } from 'node:fs';
import { certificateCovers, loadCertificatePair } from '../pki/index.js';
import { certificateSource, type CertificateSource } from './certificate-sources.js';
import { provisionAcme } from './provision-acme.js';
import type { ProvisionContext } from './provision-context.js';
import type { RawSite } from './schema.js';
import type { AcmeSource, CertificatePair } from './types.js';

/**
 * A site's `certificates` (the site at `at`, `sites[i]`, serving `hosts`):
 * either one ACME source, or up to one ECDSA and one RSA pair read from
 * files (or issued by the built-in CA, `internal: true`) that together cover
 * every host. Entries with an issue are left out.
 */
export function provisionCertificates(certificates: RawSite['certificates'], hosts: readonly string[], at: string, ctx: ProvisionContext): { certificates: CertificatePair[]; acme: AcmeSource | null } {
  const acmeEntry = certificates.findIndex((c) => c.acme !== undefined);
  if (acmeEntry >= 0) {
    const acme = provisionAcme(certificates, hosts, `${at}.certificates[${acmeEntry}]`, ctx);
    return { certificates: acme?.served ? [acme.served] : [], acme: acme?.source ?? null };
  }
  const pairs: CertificatePair[] = [];
  certificates.forEach((entry, j) => {
    const pair = provisionPair(entry, hosts, `${at}.certificates[${j}]`, ctx);
    if (!pair) return;
    const kind = pair.leaf.publicKey.asymmetricKeyType;
    const twin = pairs.find((c) => c.leaf.publicKey.asymmetricKeyType === kind);
    if (twin) ctx.issue(`${at}.certificates[${j}]`, `the site already has a ${twin.keyDescription} certificate (${twin.certFile}); list at most one ECDSA and one RSA certificate per site`);
    else pairs.push(pair);
  });
  // a host left uncovered because an entry failed would only repeat that entry's issue
  if (pairs.length === certificates.length) {
    hosts.forEach((host, j) => {
      if (!pairs.some((c) => certificateCovers(c.leaf, host))) {
        const names = pairs.map((c) => c.leaf.subjectAltName ?? '(no SAN)').join('; ');
        ctx.issue(`${at}.hosts[${j}]`, `no certificate of this site covers "${host}" (they cover ${names}); add the name to a certificate or remove the host`);
      }
    });
  }
  return { certificates: pairs, acme: null };
}

/** One `{cert, key}` or `{internal: true}` entry (at `at`, `sites[i].certificates[j]`); null when it has an issue. */
function provisionPair(entry: RawSite['certificates'][number], hosts: readonly string[], at: string, ctx: ProvisionContext): CertificatePair | null {
  const source = sourceOf(entry, hosts, at, ctx);
  if (!source) return null;
  if (source.kind === 'internal' && !existsSync(source.files.certFile)) {
    ctx.issue(`${at}.internal`, `the built-in CA has not issued ${source.files.certFile} yet; portcullis start issues it (portcullis validate does not)`);
    return null;
  }
  const loaded = loadCertificatePair(source.files.certFile, source.files.keyFile, 'server');
  if (!loaded.ok) {
    for (const p of loaded.problems) ctx.issue(`${at}.${p.field}`, p.message);
    return null;
  }
  return loaded.certificate;
}

/** Where an entry's pair is: the files it names, or the built-in CA's for the site; null when it has an issue. */
function sourceOf(entry: RawSite['certificates'][number], hosts: readonly string[], at: string, ctx: ProvisionContext): CertificateSource | null {
  if (entry.internal) {
    if (entry.cert === undefined && entry.key === undefined) return certificateSource.internal(ctx.dataDir, hosts);
    ctx.issue(at, 'give either internal: true or cert: and key:, not both');
    return null;
  }
  if (entry.cert === undefined || entry.key === undefined) {
    ctx.issue(at, `give both cert: (PEM chain, leaf first) and key: (PEM private key); ${entry.cert === undefined ? 'cert' : 'key'} is missing`);
    return null;
  }
  return certificateSource.file(ctx.file(entry.cert), ctx.file(entry.key));
}
