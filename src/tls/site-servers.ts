import type { IncomingMessage } from 'node:http';
import type { Http2SecureServer, Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import type { ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { Config, Site } from '../config/index.js';
import { describeConnection, tagSession, tagSocket } from './connection-info.js';
import type { TicketKeyRing } from './ticket-keys.js';
import { createSiteServer } from './tls-server.js';

/** Where the TLS layer hands its results. */
export interface TlsHandlers {
  request(req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse): void;
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  handshakeFailed(err: Error & { code?: string }, socket: TLSSocket, site: Site): void;
  /** An HTTP/1.1 request the parser refused. */
  clientError(err: Error & { code?: string }, socket: Duplex, site: Site): void;
}

/**
 * One TLS server per site for one config generation, and the lookup from a
 * ClientHello to the site that serves it: exact host, then a one-label
 * wildcard, then the default site; none means the handshake is refused.
 */
export class SiteServers {
  readonly #servers = new Map<string, Http2SecureServer>();

  constructor(
    readonly config: Config,
    tickets: TicketKeyRing,
    handlers: TlsHandlers,
  ) {
    for (const site of config.sites) {
      const server = createSiteServer(config, site);
      tickets.installOnServer(server);
      // Runs before the HTTP layer sees the socket, so every request finds its connection described.
      server.prependListener('secureConnection', (socket: TLSSocket) => tagSocket(socket, describeConnection(socket, site)));
      server.on('session', (session) => {
        tagSession(session);
        session.setTimeout(config.timeouts.idleMs, () => session.close());
      });
      server.on('request', handlers.request);
      server.on('upgrade', handlers.upgrade);
      server.on('clientError', (err: Error & { code?: string }, socket: Duplex) => handlers.clientError(err, socket, site));
      server.on('tlsClientError', (err: Error & { code?: string }, socket: TLSSocket) => handlers.handshakeFailed(err, socket, site));
      this.#servers.set(site.id, server);
    }
  }

  /**
   * The site a ClientHello lands on; null when it is refused. Clients send no
   * server name for IP addresses (RFC 6066 §3), so without one the address
   * the client connected to selects the site whose hosts list it.
   */
  siteFor(serverName: string | null, localAddress: string): Site | null {
    const name = serverName ?? (localAddress.startsWith('::ffff:') ? localAddress.slice(7) : localAddress.toLowerCase());
    return this.config.hosts.lookup(name) ?? this.config.defaultSite;
  }

  serverFor(site: Site): Http2SecureServer {
    return this.#servers.get(site.id) as Http2SecureServer;
  }

  /** Closes every server (idle HTTP/1 connections included); the edge destroys the rest. */
  close(): void {
    for (const server of this.#servers.values()) server.close();
  }
}
