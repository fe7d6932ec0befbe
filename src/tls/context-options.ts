import type { SecureContextOptions } from 'node:tls';
import type { Site, TlsProfile } from '../config/index.js';

/** The profile's protocol settings, for every context we create (server and upstream client). */
export function profileOptions(profile: TlsProfile): SecureContextOptions {
  return {
    minVersion: profile.minVersion,
    maxVersion: profile.maxVersion,
    ciphers: profile.ciphers,
    ecdhCurve: profile.ecdhCurve,
    sigalgs: profile.sigalgs,
    secureOptions: profile.secureOptions,
    honorCipherOrder: true,
  };
}

/**
 * Context options for one site: every certificate side by side in the base
 * context of the site's server, where OpenSSL picks for each client one it
 * supports (ECDSA or RSA). This only works in a base context: Node's SNI
 * switch copies a single certificate, which is why each site has its own
 * server and the edge routes by the ClientHello's server name.
 */
export function siteContextOptions(site: Site, profile: TlsProfile): SecureContextOptions {
  return {
    ...profileOptions(profile),
    cert: site.certificates.map((c) => c.chainPem),
    key: site.certificates.map((c) => c.keyPem),
  };
}
