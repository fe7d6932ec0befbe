import { join } from 'node:path';

/** The state keys of the certificate an ACME CA issued for a site: named after the site's first host. */
export function acmeCertificateKeys(firstHost: string): { cert: string; key: string } {
  const base = `acme/certificates/${firstHost.replace(/[^A-Za-z0-9._-]/g, '_')}`;
  return { cert: `${base}.pem`, key: `${base}.key` };
}

/** The same, as files under dataDir (where the memory backend keeps them and the config loader reads them). */
export function acmeCertificateFiles(dataDir: string, firstHost: string): { certFile: string; keyFile: string } {
  const keys = acmeCertificateKeys(firstHost);
  return { certFile: join(dataDir, keys.cert), keyFile: join(dataDir, keys.key) };
}
