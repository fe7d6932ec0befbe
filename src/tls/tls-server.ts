import { createSecureServer, type Http2SecureServer, type SecureServerOptions } from 'node:http2';
import type { SecureContext, SecureContextOptions } from 'node:tls';
import type { Config } from '../config/index.js';
import { profileOptions, siteContextOptions } from './site-contexts.js';

/**
 * Options of the server's base context: the profile, plus the default site's
 * certificates when there is one. Without a default site the base context has
 * no certificate, so a handshake without SNI cannot complete.
 */
export function baseContextOptions(config: Config): SecureContextOptions {
  const site = config.defaultSite;
  return site ? siteContextOptions(site, config.tls.profile) : profileOptions(config.tls.profile);
}

type SniCallback = (serverName: string, done: (err: Error | null, ctx?: SecureContext) => void) => void;

/**
 * The TLS + HTTP server: HTTP/2 and HTTP/1.1 on one port chosen by ALPN,
 * both delivering requests to the same 'request' listener. It does not listen
 * itself; the edge listener hands it accepted sockets.
 */
export function createTlsServer(config: Config, sniCallback: SniCallback): Http2SecureServer {
  const options: SecureServerOptions = {
    ...baseContextOptions(config),
    SNICallback: sniCallback,
    allowHTTP1: true,
    handshakeTimeout: config.timeouts.handshakeMs,
    maxSessionMemory: 10,
    settings: { maxHeaderListSize: config.limits.maxHeaderBytes, enablePush: false },
  };
  const server = createSecureServer(options);
  applyHttpLimits(server, config);
  // The HTTP/1 side enforces headers/request timeouts from a connection list
  // that Node sets up on 'listening'. This server never listens itself (the
  // edge listener feeds it sockets), so announce it now, before any connection.
  server.emit('listening');
  return server;
}

/** HTTP/1.1 limits and timeouts; the HTTP/1 side of the server reads them from these properties. */
export function applyHttpLimits(server: Http2SecureServer, config: Config): void {
  const http1 = server as unknown as {
    maxHeaderSize: number;
    headersTimeout: number;
    requestTimeout: number;
    keepAliveTimeout: number;
    connectionsCheckingInterval: number;
  };
  http1.maxHeaderSize = config.limits.maxHeaderBytes;
  http1.headersTimeout = config.timeouts.headersMs;
  http1.requestTimeout = config.timeouts.requestMs;
  http1.keepAliveTimeout = config.timeouts.idleMs;
  // Node checks those two timeouts every 30 s by default: too coarse for a 30 s limit.
  http1.connectionsCheckingInterval = Math.min(5_000, Math.ceil(config.timeouts.headersMs / 2));
}
