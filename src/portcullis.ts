import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Config } from './config/index.js';
import { HttpsListener } from './edge/index.js';
import { handleRequest, handleUpgrade, UpstreamSet, type ProxyState } from './proxy/index.js';
import type { Logger } from './telemetry/index.js';
import { SiteContexts, TicketKeyRing, classifyHandshakeFailure, createTlsServer, describeConnection, tagSession, tagSocket } from './tls/index.js';

export interface Portcullis {
  readonly address: AddressInfo;
  readonly config: Config;
  /** Stops accepting, closes every connection and upstream pool. Safe to call twice. */
  close(): Promise<void>;
}

/**
 * Wires the data path for one config: TCP accept (edge) → TLS with SNI (tls)
 * → HTTP/1.1 + HTTP/2 → request pipeline (proxy) → upstream pools.
 * Rejects with PCL_LISTEN_FAILED when the address cannot be bound.
 */
export async function startPortcullis(config: Config, log: Logger): Promise<Portcullis> {
  const tickets = new TicketKeyRing();
  tickets.start(config.tls.ticketKeyRotationMs);
  if (!tickets.keepsPrevious) log.warn('this Node.js lacks the session-ticket key hook: a ticket-key rotation ends every cached session');
  const contexts = new SiteContexts(config, tickets);
  const state: ProxyState = { config, upstreams: new UpstreamSet(config), log };

  const server = createTlsServer(config, contexts.sniCallback);
  tickets.installOnServer(server);
  // Runs before the HTTP layer sees the socket, so every request finds its connection described.
  server.prependListener('secureConnection', (socket: TLSSocket) => {
    const servername = (socket as TLSSocket & { servername?: string | false }).servername;
    tagSocket(socket, describeConnection(socket, contexts.siteFor(servername)));
  });
  server.on('session', (session) => {
    tagSession(session);
    session.setTimeout(config.timeouts.idleMs, () => session.close());
  });
  server.on('request', (req, res) => handleRequest(state, req, res));
  server.on('upgrade', (req, socket, head) => handleUpgrade(state, req, socket, head));
  server.on('tlsClientError', (err: Error & { code?: string }, socket: TLSSocket) => {
    const failure = classifyHandshakeFailure(err);
    log.info({ event: 'handshake_failed', reason: failure.reason, detail: failure.detail, remoteAddress: socket.remoteAddress, message: err.message }, 'TLS handshake refused');
  });

  const listener = new HttpsListener(server);
  let address: AddressInfo;
  try {
    address = await listener.listen(config.listen.https, 'listen.https');
  } catch (err) {
    tickets.stop();
    await state.upstreams.close();
    throw err;
  }

  let closing: Promise<void> | null = null;
  return {
    address,
    config,
    close() {
      closing ??= (async () => {
        tickets.stop();
        server.close();
        await listener.close();
        await state.upstreams.close();
      })();
      return closing;
    },
  };
}
