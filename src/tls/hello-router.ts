import type { Socket } from 'node:net';
import { ipAdmitted } from '../access/index.js';
import type { HelloRouter } from '../edge/index.js';
import { acmeAlpnProtocol, type AlpnChallengeServers } from './alpn-challenges.js';
import type { SiteServers } from './site-servers.js';

/**
 * Decides each ClientHello's fate, once, from the config in force: a CA
 * validating tls-alpn-01 gets the challenge certificate and nothing of a
 * site; anyone else gets the TLS server of the site the server name selects
 * (`SiteServers.siteFor`, the one place a connection's site is chosen),
 * unless the site's own ipAccess excludes the source or it has no
 * certificate yet (an ACME site before its first). The site's server then
 * knows its site for the connection's whole life.
 */
export function helloRouter(sites: SiteServers, challenges: AlpnChallengeServers): HelloRouter {
  return (hello, socket: Socket) => {
    if (hello.alpn.length === 1 && hello.alpn[0] === acmeAlpnProtocol) {
      return challenges.serverFor(hello.serverName) ?? { refuse: 'no_acme_challenge', details: {}, message: `tls-alpn-01 validation for ${hello.serverName ?? '(no name)'} refused: no ACME challenge is pending for it` };
    }
    const site = sites.siteFor(hello.serverName, socket.localAddress ?? '');
    if (!site) return null;
    if (!ipAdmitted(site.ipAccess, socket.remoteAddress ?? '')) {
      return { refuse: 'ip_denied', details: { site: site.id, list: `sites[${site.index}].ipAccess` }, message: `handshake for ${hello.serverName ?? '(no name)'} refused: the source is outside site ${site.id}'s ipAccess` };
    }
    if (site.certificates.length === 0) {
      const why = site.acme?.storedProblem ?? 'the ACME certificate is not issued yet';
      return { refuse: 'certificate_pending', details: { site: site.id, why }, message: `handshake for ${hello.serverName} refused: site ${site.id} has no certificate yet (${why}); it serves once ACME issues one` };
    }
    return sites.serverFor(site);
  };
}
