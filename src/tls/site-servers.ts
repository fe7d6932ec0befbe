import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2SecureServer, Http2ServerRequest, Http2ServerResponse, ServerHttp2Session } from 'node:http2';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { Config, Site } from '../config/index.js';
import { connectionOfSocket, describeConnection, tagSession, tagSocket, tlsSocketOf, untagSession, withVerdict, type ConnectionInfo } from './connection-info.js';
import type { ClientCertificate } from '../trust/index.js';
import { guardHttp2Session } from './http2-guard.js';
import type { Reason } from '../errors.js';
import type { TicketKeyRing } from './ticket-keys.js';
import { createSiteServer, updateSiteServer } from './tls-server.js';
import { helloSummaryOf, type HelloSummary } from '../edge/index.js';

/** Where the TLS layer hands its results. */
export interface TlsHandlers {
  request(req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse): void;
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  handshakeFailed(err: Error & { code?: string }, socket: TLSSocket, site: Site, hello: HelloSummary | null): void;
  /** A finished handshake, described; `handshakeMs` from TCP accept (null when the edge did not see it). */
  connectionAccepted(info: ConnectionInfo, handshakeMs: number | null): void;
  /** An established connection the proxy ended because its client exceeded a per-connection limit. */
  connectionClosed(info: ConnectionInfo, reason: Reason, detail: string): void;
  /**
   * A connection to a mutual-TLS site whose client certificate passed the
   * handshake's checks: the final verdict, or its promise while the revocation
   * check waits for an answer (return `info.client` when it stands).
   */
  clientCertificate(info: ConnectionInfo, site: Site): ClientCertificate | Promise<ClientCertificate>;
  /** An HTTP/1.1 request the parser refused. */
  clientError(err: Error & { code?: string }, socket: Duplex, site: Site): void;
  /** A handshake asks for a stapled OCSP response for `certificate` (DER): answer `callback(null, der)`, or `callback(null)` for none. */
  ocspRequest(site: Site, certificate: Buffer, callback: (err: Error | null, response?: Buffer) => void): void;
}

interface Entry {
  readonly server: Http2SecureServer;
  /** The site as of the latest config; connections made from now on are described with it. */
  site: Site;
  readonly sessions: Set<ServerHttp2Session>;
  readonly sockets: Set<TLSSocket>;
}

function closeIfRefused(socket: TLSSocket, client: ClientCertificate): void {
  if (client.status !== 'valid') socket.destroy();
}

/**
 * One TLS server per site, kept in line with the current config, and the
 * lookup from a ClientHello to the site that serves it: exact host, then a
 * one-label wildcard, then the default site; none means the handshake is refused.
 */
export class SiteServers {
  readonly #entries = new Map<string, Entry>();
  readonly #tickets: TicketKeyRing;
  readonly #handlers: TlsHandlers;
  #config: Config;

  constructor(config: Config, tickets: TicketKeyRing, handlers: TlsHandlers) {
    this.#tickets = tickets;
    this.#handlers = handlers;
    this.#config = config;
    for (const site of config.sites) this.#entries.set(site.id, this.#create(config, site));
  }

  /**
   * Brings the servers in line with a reloaded config: a site that stays keeps
   * its server (open connections continue) with new certificates and limits for
   * new handshakes; a new site gets a server; a removed site's server takes no
   * more handshakes, asks its idle connections and HTTP/2 sessions to close,
   * and is closed for good after timeouts.drain.
   */
  apply(config: Config): void {
    for (const site of config.sites) {
      const entry = this.#entries.get(site.id);
      if (!entry) {
        this.#entries.set(site.id, this.#create(config, site));
        continue;
      }
      updateSiteServer(entry.server, config, site);
      this.#tickets.installOnServer(entry.server);
      // connections judged under another client-certificate policy should reconnect
      if ((entry.site.clientAuth?.key ?? null) !== (site.clientAuth?.key ?? null)) this.#closeGently(entry);
      entry.site = site;
    }
    for (const [id, entry] of this.#entries) {
      if (config.sites.some((s) => s.id === id)) continue;
      this.#entries.delete(id);
      this.#tickets.forgetServer(entry.server);
      this.#closeGently(entry);
      // what is still open after a drain's worth of time is closed, and the server with it
      setTimeout(() => {
        for (const socket of entry.sockets) socket.destroy();
        entry.server.close();
      }, config.timeouts.drainMs).unref();
    }
    this.#config = config;
  }

  /**
   * The site a ClientHello lands on; null when it is refused. Clients send no
   * server name for IP addresses (RFC 6066 §3), so without one the address
   * the client connected to selects the site whose hosts list it.
   */
  siteFor(serverName: string | null, localAddress: string): Site | null {
    const name = serverName ?? (localAddress.startsWith('::ffff:') ? localAddress.slice(7) : localAddress.toLowerCase());
    return this.#config.hosts.lookup(name) ?? this.#config.defaultSite;
  }

  serverFor(site: Site): Http2SecureServer {
    return (this.#entries.get(site.id) as Entry).server;
  }

  /** Asks every connection to finish: idle HTTP/1.1 connections close now, HTTP/2 sessions get GOAWAY. Call again to close connections that became idle since. */
  drain(): void {
    for (const entry of this.#entries.values()) this.#closeGently(entry);
  }

  /** Closes at once every open connection `test` picks (e.g. one presenting a certificate just denied); returns how many. */
  closeConnections(test: (info: ConnectionInfo) => boolean): number {
    let closed = 0;
    for (const entry of this.#entries.values()) {
      for (const socket of entry.sockets) {
        const info = connectionOfSocket(socket);
        if (info && test(info)) {
          socket.destroy();
          closed++;
        }
      }
    }
    return closed;
  }

  /** Final stop: the servers' own timers end (connections are destroyed by the edge). */
  stop(): void {
    for (const entry of this.#entries.values()) entry.server.close();
  }

  #closeGently(entry: Entry): void {
    // present on a secure HTTP/2 server with allowHTTP1 (it closes idle HTTP/1.1 connections); missing from the types
    (entry.server as Http2SecureServer & { closeIdleConnections(): void }).closeIdleConnections();
    for (const session of entry.sessions) session.close();
  }

  #create(config: Config, site: Site): Entry {
    const server = createSiteServer(config, site);
    const entry: Entry = { server, site, sessions: new Set(), sockets: new Set() };
    this.#tickets.installOnServer(server);
    // The site as it was when the connection arrived: its handshake runs on the secure context of
    // that moment, so it is judged by that policy even if a reload lands before the handshake ends.
    // What the edge read of the ClientHello travels with it: the TLS socket does not expose its raw socket.
    const siteAtAccept = new Map<string, { raw: Socket; site: Site; hello: HelloSummary | null }>();
    const keyOf = (socket: Socket | TLSSocket) => `${socket.remoteAddress}|${socket.remotePort}`;
    // read once, when the handshake ends either way, so that an idle connection keeps no entry
    const takeAtAccept = (socket: TLSSocket) => {
      const key = keyOf(socket);
      const accepted = siteAtAccept.get(key);
      siteAtAccept.delete(key);
      return accepted;
    };
    // Shared listeners (`this` is the emitter): a closure per connection would cost each idle one a few hundred bytes.
    // A raw socket that closes before its handshake ends removes its own entry, not a later connection's from the same port.
    const forgetRaw = function (this: Socket) {
      const key = keyOf(this);
      if (siteAtAccept.get(key)?.raw === this) siteAtAccept.delete(key);
    };
    const forgetSocket = function (this: TLSSocket) {
      entry.sockets.delete(this);
    };
    const forgetSession = function (this: ServerHttp2Session) {
      entry.sessions.delete(this);
      untagSession(this);
    };
    server.prependListener('connection', (raw: Socket) => {
      siteAtAccept.set(keyOf(raw), { raw, site: entry.site, hello: helloSummaryOf(raw) });
      raw.on('close', forgetRaw);
    });
    // Runs before the HTTP layer sees the socket, so every request finds its connection described.
    server.prependListener('secureConnection', (socket: TLSSocket) => {
      const accepted = takeAtAccept(socket);
      let described: ConnectionInfo;
      try {
        described = describeConnection(socket, accepted?.site ?? entry.site, accepted?.hello ?? null, this.#config.tls.profile);
      } catch (err) {
        // nothing a client sends may take the process down
        this.#handlers.handshakeFailed(Object.assign(err as Error, { code: 'PCL_TLS_UNREADABLE_CONNECTION' }), socket, entry.site, accepted?.hello ?? null);
        socket.destroy();
        return;
      }
      const hello = accepted?.hello;
      this.#handlers.connectionAccepted(described, hello ? performance.now() - hello.acceptedAt : null);
      const info = described.client ? withVerdict(described, this.#handlers.clientCertificate(described, described.site as Site)) : described;
      tagSocket(socket, info);
      // refuseAt: handshake: a certificate found invalid (now, or once its revocation check answers) ends the connection before any request
      if (info.client && info.site?.clientAuth?.refuseAt === 'handshake') {
        if (info.settling) void info.settling.then((client) => closeIfRefused(socket, client));
        else closeIfRefused(socket, info.client);
      }
      entry.sockets.add(socket);
      socket.on('close', forgetSocket);
    });
    server.on('session', (session) => {
      const info = tagSession(session);
      const socket = tlsSocketOf(session);
      // an undescribed connection was refused and its socket destroyed already
      if (!info || !socket) {
        session.destroy();
        return;
      }
      entry.sessions.add(session);
      session.on('close', forgetSession);
      guardHttp2Session(session, socket, this.#config.timeouts.idleMs, (reason, detail) => this.#handlers.connectionClosed(info, reason, detail));
    });
    server.on('request', this.#handlers.request);
    server.on('upgrade', this.#handlers.upgrade);
    server.on('clientError', (err: Error & { code?: string }, socket: Duplex) => this.#handlers.clientError(err, socket, entry.site));
    server.on('tlsClientError', (err: Error & { code?: string }, socket: TLSSocket) => this.#handlers.handshakeFailed(err, socket, entry.site, takeAtAccept(socket)?.hello ?? null));
    // OCSP stapling (RFC 6066 §8): Node asks only when the client sent status_request
    server.on('OCSPRequest', (certificate: Buffer, _issuer: Buffer | null, callback: (err: Error | null, response?: Buffer) => void) => this.#handlers.ocspRequest(entry.site, certificate, callback));
    return entry;
  }
}
