import { createSecureContext, type SecureContext, type SecureContextOptions } from 'node:tls';
import type { Config, Site, TlsProfile } from '../config/index.js';
import type { TicketKeyRing } from './ticket-keys.js';

/** The profile's protocol settings, shared by the server's base context and every site context. */
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

/** Context options for one site: every certificate side by side, so OpenSSL serves each client one it supports. */
export function siteContextOptions(site: Site, profile: TlsProfile): SecureContextOptions {
  return {
    ...profileOptions(profile),
    cert: site.certificates.map((c) => c.chainPem),
    key: site.certificates.map((c) => c.keyPem),
  };
}

/** Thrown to the SNI callback for a server name no site serves; OpenSSL then aborts the handshake. */
export class UnknownServerNameError extends Error {
  readonly code = 'PCL_TLS_UNKNOWN_SNI';
  constructor(readonly serverName: string) {
    super(`no site serves the TLS server name "${serverName}" and no site is marked default`);
  }
}

/**
 * The secure context of every site, built once per config generation, and the
 * SNI lookup over them. An unknown name gets the default site when one is
 * configured; otherwise the handshake is refused.
 */
export class SiteContexts {
  readonly #bySite = new Map<string, SecureContext>();

  constructor(
    readonly config: Config,
    tickets: TicketKeyRing,
  ) {
    for (const site of config.sites) {
      const context = createSecureContext(siteContextOptions(site, config.tls.profile));
      tickets.installOnContext(context);
      this.#bySite.set(site.id, context);
    }
  }

  /** The site a handshake with this server name (or none) lands on, or null when it is refused. */
  siteFor(serverName: string | undefined | false): Site | null {
    if (!serverName) return this.config.defaultSite;
    return this.config.hosts.lookup(serverName.toLowerCase()) ?? this.config.defaultSite;
  }

  contextFor(site: Site): SecureContext {
    return this.#bySite.get(site.id) as SecureContext;
  }

  /** Node's SNICallback. */
  readonly sniCallback = (serverName: string, done: (err: Error | null, ctx?: SecureContext) => void): void => {
    const site = this.siteFor(serverName);
    if (site) done(null, this.contextFor(site));
    else done(new UnknownServerNameError(serverName));
  };
}
