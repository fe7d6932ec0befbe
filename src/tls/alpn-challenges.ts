import { createServer, type Server } from 'node:tls';
import type { AcmeChallengeSet } from '../acme/index.js';

/** The ALPN protocol of tls-alpn-01 (RFC 8737): a ClientHello offering only this is a CA validating, never normal traffic. */
export const acmeAlpnProtocol = 'acme-tls/1';

/**
 * TLS servers that answer tls-alpn-01 validations: for each name being
 * validated, a handshake with the challenge certificate and ALPN
 * `acme-tls/1`, then close — no HTTP, nothing of the site is reachable.
 */
export class AlpnChallengeServers {
  readonly #servers = new Map<string, { server: Server; certPem: string }>();

  constructor(private readonly handshakeTimeoutMs: number) {}

  set(alpn: AcmeChallengeSet['alpn']): void {
    const wanted = new Map(alpn.map((c) => [c.name.toLowerCase(), c]));
    for (const [name, entry] of this.#servers) {
      if (wanted.get(name)?.certPem === entry.certPem) continue;
      entry.server.close();
      this.#servers.delete(name);
    }
    for (const [name, c] of wanted) {
      if (this.#servers.has(name)) continue;
      const server = createServer({ cert: c.certPem, key: c.keyPem, ALPNProtocols: [acmeAlpnProtocol], minVersion: 'TLSv1.2', handshakeTimeout: this.handshakeTimeoutMs }, (socket) => socket.end());
      // a validator that goes away mid-handshake is no concern of ours
      server.on('tlsClientError', () => {});
      this.#servers.set(name, { server, certPem: c.certPem });
    }
  }

  serverFor(name: string | null): Server | null {
    return name ? (this.#servers.get(name.toLowerCase())?.server ?? null) : null;
  }

  close(): void {
    for (const { server } of this.#servers.values()) server.close();
    this.#servers.clear();
  }
}
