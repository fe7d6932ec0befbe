import type { AddressInfo } from 'node:net';
import type { Config } from './config/index.js';
import { HttpsListener } from './edge/index.js';
import { answerClientError, handleRequest, handleUpgrade, UpstreamSet, type ProxyState } from './proxy/index.js';
import type { Logger } from './telemetry/index.js';
import { SiteServers, TicketKeyRing, classifyHandshakeFailure } from './tls/index.js';

export interface Portcullis {
  readonly address: AddressInfo;
  readonly config: Config;
  /** Stops accepting, closes every connection and upstream pool. Safe to call twice. */
  close(): Promise<void>;
}

/**
 * Wires the data path for one config: TCP accept and ClientHello peek (edge)
 * → the site's TLS server (tls)
 * → HTTP/1.1 + HTTP/2 → request pipeline (proxy) → upstream pools.
 * Rejects with PCL_LISTEN_FAILED when the address cannot be bound.
 */
export async function startPortcullis(config: Config, log: Logger): Promise<Portcullis> {
  const tickets = new TicketKeyRing();
  tickets.start(config.tls.ticketKeyRotationMs);
  if (!tickets.keepsPrevious) log.warn('this Node.js lacks the session-ticket key hook: a ticket-key rotation ends every cached session');
  const state: ProxyState = { config, upstreams: new UpstreamSet(config), log };
  const servers = new SiteServers(config, tickets, {
    request: (req, res) => handleRequest(state, req, res),
    upgrade: (req, socket, head) => handleUpgrade(state, req, socket, head),
    clientError: (err, socket, site) => {
      const answered = answerClientError(err, socket, site);
      if (answered) log.info({ event: 'request_refused', ...answered, site: site.id, detail: err.code }, 'HTTP request refused by the parser');
    },
    handshakeFailed: (err, socket, site) => {
      const failure = classifyHandshakeFailure(err);
      log.info({ event: 'handshake_failed', reason: failure.reason, detail: failure.detail, site: site.id, remoteAddress: socket.remoteAddress }, 'TLS handshake refused');
    },
  });
  const listener = new HttpsListener({
    route: (hello, socket) => {
      const site = servers.siteFor(hello.serverName, socket.localAddress ?? '');
      return site ? servers.serverFor(site) : null;
    },
    handshakeTimeoutMs: config.timeouts.handshakeMs,
    log,
  });

  let address: AddressInfo;
  try {
    address = await listener.listen(config.listen.https, 'listen.https');
  } catch (err) {
    tickets.stop();
    servers.close();
    await state.upstreams.destroy();
    throw err;
  }

  let closing: Promise<void> | null = null;
  return {
    address,
    config,
    close() {
      closing ??= (async () => {
        tickets.stop();
        servers.close();
        await listener.close();
        await state.upstreams.destroy();
      })();
      return closing;
    },
  };
}
