import { createHash } from 'node:crypto';
import { createSecureServer, type Http2SecureServer, type SecureServerOptions } from 'node:http2';
import type { TLSSocket } from 'node:tls';
import type { Config, Site } from '../config/index.js';
import { siteContextOptions } from './context-options.js';

/** Everything of a site server that a reload may change: certificates, profile, HTTP/2 settings. */
function siteServerOptions(config: Config, site: Site): SecureServerOptions {
  return {
    ...siteContextOptions(site, config.tls.profile),
    // Mutual TLS: ask for a certificate and verify it against the site's CAs. By default the handshake
    // finishes either way, so that the proxy can answer each request with the reason; refuseAt: handshake
    // has OpenSSL fail a handshake without a certificate (certificate_required).
    ...(site.clientAuth ? { requestCert: true, rejectUnauthorized: site.clientAuth.refuseAt === 'handshake', ca: [...site.clientAuth.caPem] } : { requestCert: false }),
    // Sessions resume only on the site, and under the client-certificate policy, that made them
    // (OpenSSL compares this context): a reload that changes the CAs makes clients show a certificate again.
    sessionIdContext: createHash('sha256').update(`${site.id} ${site.clientAuth?.key ?? 'none'}`).digest('hex').slice(0, 32),
    // Node resets a stream whose header list exceeds this (ENHANCE_YOUR_CALM, nothing logged); twice the
    // limit leaves everything up to there to the request pipeline, which answers 431 and logs it
    settings: { maxHeaderListSize: 2 * config.limits.maxHeaderBytes, maxConcurrentStreams: config.limits.maxConcurrentStreams, enablePush: false },
  };
}

/**
 * Node's cap on HTTP/2 header fields per request, pseudo-header fields and
 * each cookie crumb included (128 by default: a browser sending its cookies
 * as separate fields met it). Four times limits.maxHeaderFields leaves room
 * for cookies (browsers keep at most 180 per site) and lets the pipeline answer
 * 431 to anything plausible; beyond it the stream is reset. It also bounds an
 * HPACK bomb before the client has acknowledged our SETTINGS (until then Node
 * does not apply the header list size): each field decodes to at most the
 * 4 KiB dynamic table. Read when the site's server starts (a restart applies
 * a changed maxHeaderFields to it; the 431 rule applies at once).
 */
const maxHeaderListPairs = (config: Config): number => 4 * config.limits.maxHeaderFields + 8;

/**
 * The TLS + HTTP server of one site: HTTP/2 and HTTP/1.1 on one port chosen
 * by ALPN, both delivering requests to the same 'request' listener. It does
 * not listen itself; the edge hands it sockets whose ClientHello named the site.
 */
export function createSiteServer(config: Config, site: Site): Http2SecureServer {
  const server = createSecureServer({
    ...siteServerOptions(config, site),
    SNICallback: judgeCertificatesOurselves as unknown as SecureServerOptions['SNICallback'],
    allowHTTP1: true,
    maxHeaderListPairs: maxHeaderListPairs(config),
    handshakeTimeout: config.timeouts.handshakeMs,
    maxSessionMemory: 10,
  });
  applyHttpLimits(server, config);
  // The HTTP/1 side enforces headers/request timeouts from a connection list
  // that Node sets up on 'listening'. This server never listens itself, so
  // announce it now, before any connection arrives.
  server.emit('listening');
  return server;
}

/**
 * With rejectUnauthorized (refuseAt: handshake) Node also closes a connection
 * whose certificate failed verification, silently, before the proxy could read
 * the certificate and say why. Node calls the SNI hook during the handshake
 * with the socket as `this`: it hands that decision back to the proxy, which
 * closes such a connection before any request and logs the certificate and
 * the reason. A client that sends no server name skips the hook; its refusal
 * is logged from OpenSSL's code alone.
 */
function judgeCertificatesOurselves(this: TLSSocket, _servername: string, keepContext: (err: Error | null) => void): void {
  (this as TLSSocket & { _rejectUnauthorized: boolean })._rejectUnauthorized = false;
  keepContext(null);
}

/**
 * Applies a reloaded config to a running site server. New handshakes get the
 * new certificates; open connections keep theirs. `setSecureContext` also
 * replaces the session-ticket keys, so the caller re-installs them.
 */
export function updateSiteServer(server: Http2SecureServer, config: Config, site: Site): void {
  const options = siteServerOptions(config, site);
  server.setSecureContext(options);
  // per-connection settings the server reads from itself, not from its context
  const perConnection = server as unknown as { requestCert: boolean; rejectUnauthorized: boolean };
  perConnection.requestCert = options.requestCert === true;
  perConnection.rejectUnauthorized = options.rejectUnauthorized === true;
  server.updateSettings(options.settings ?? {});
  (server as unknown as { handshakeTimeout: number }).handshakeTimeout = config.timeouts.handshakeMs;
  applyHttpLimits(server, config);
}

/** HTTP/1.1 limits and timeouts; the HTTP/1 side of the server reads them from these properties. */
function applyHttpLimits(server: Http2SecureServer, config: Config): void {
  const http1 = server as unknown as {
    maxHeaderSize: number;
    maxHeadersCount: number;
    headersTimeout: number;
    requestTimeout: number;
    keepAliveTimeout: number;
    connectionsCheckingInterval: number;
  };
  const { limits, timeouts } = config;
  // The parser counts the target, names and values without overhead: never more than the pipeline's rule,
  // so it refuses (431) only what the pipeline would. Beyond maxHeadersCount Node drops fields silently;
  // set where the size rule refuses the request anyway.
  http1.maxHeaderSize = limits.maxHeaderBytes;
  http1.maxHeadersCount = Math.ceil(limits.maxHeaderBytes / 32) + 1;
  // Node swaps the two when the request timeout is the shorter one, which made a body deadline
  // shorter than timeouts.headers never fire: the headers cannot take longer than the whole request.
  http1.headersTimeout = Math.min(timeouts.headersMs, timeouts.requestMs);
  http1.requestTimeout = timeouts.requestMs;
  http1.keepAliveTimeout = timeouts.idleMs;
  // Node checks those two timeouts every 30 s by default: too coarse for a 30 s limit.
  // (Read once, when 'listening' is emitted; a reload keeps the interval it started with.)
  http1.connectionsCheckingInterval = Math.min(5_000, Math.ceil(http1.headersTimeout / 2));
}
