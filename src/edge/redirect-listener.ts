import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { readFile } from 'node:fs/promises';
import type { AddressInfo, Socket } from 'node:net';
import { isIP } from 'node:net';
import { hasDuplicateHost, hostFromAuthority, type Config, type ListenAddress } from '../config/index.js';
import type { Reason } from '../errors.js';
import type { Logger } from '../observe/index.js';
import { caCrlFiles } from '../pki/index.js';
import { caFolder } from '../state/index.js';
import { bindServer } from './bind.js';
import { adoptSource, fromBalancer, ProxyHeaderRead, type HeaderRead } from './proxy-source.js';

/**
 * Answers an ACME http-01 challenge token (RFC 8555 §8.3) with its key
 * authorization, or null when the token is unknown. The ACME source installs it.
 */
export type ChallengeResponder = (token: string) => string | null;

export interface RedirectListenerOptions {
  /** The current config: its hosts decide what may be redirected. */
  readonly config: () => Config;
  /** The port of the HTTPS listener, for the Location. */
  readonly httpsPort: () => number;
  readonly log: Logger;
}

/** How long a request head may take (headersTimeout, requestTimeout), and a balancer's PROXY header before it. */
const headersTimeoutMs = 10_000;
const challengePrefix = '/.well-known/acme-challenge/';
const tokenPattern = /^[A-Za-z0-9_-]{1,256}$/;

/**
 * The plain-HTTP listener: it never proxies. A request for a configured host
 * gets `308` to the same path on HTTPS; anything that could turn it into an
 * open redirect — an unknown or malformed Host, userinfo, an absolute-form
 * target for another host, a target that is not a plain path (`//evil.test`,
 * backslashes) — gets 400 or 421 and no Location. ACME http-01 tokens are
 * answered here when a responder is installed. Behind a balancer of
 * `listen.proxyProtocol`, the client its PROXY header names is the one
 * logged; a PROXY header from anyone else is refused.
 */
export class RedirectListener {
  readonly #server: Server;
  readonly #opts: RedirectListenerOptions;
  #challenges: ChallengeResponder | null = null;
  /** Node's own handlers of a new connection: called once the first bytes are judged, at once when no balancer is configured. */
  readonly #serve: ((this: Server, socket: Socket) => void)[];
  /** Connections whose first bytes are being read: not the HTTP server's yet, so closed here. */
  readonly #reading = new Set<Socket>();

  constructor(opts: RedirectListenerOptions) {
    this.#opts = opts;
    this.#server = createServer({ maxHeaderSize: 8192, requireHostHeader: true }, (req, res) => this.#answer(req, res));
    this.#server.headersTimeout = headersTimeoutMs;
    this.#server.requestTimeout = headersTimeoutMs;
    this.#server.keepAliveTimeout = 5_000;
    // The server keeps listening itself (its request-timeout checks start with 'listening'); only its
    // 'connection' handlers are taken over, so that a PROXY header is read before HTTP sees a byte.
    this.#serve = this.#server.listeners('connection') as ((this: Server, socket: Socket) => void)[];
    this.#server.removeAllListeners('connection');
    this.#server.on('connection', (socket: Socket) => this.#accept(socket));
  }

  /** Installs (or removes, with null) the ACME http-01 responder. */
  setChallengeResponder(responder: ChallengeResponder | null): void {
    this.#challenges = responder;
  }

  listen(address: ListenAddress): Promise<AddressInfo> {
    return bindServer(this.#server, address, 'listen.http');
  }

  close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeAllConnections();
    for (const socket of this.#reading) socket.destroy();
    return closed;
  }

  #accept(socket: Socket): void {
    const balancers = this.#opts.config().listen.proxyProtocol;
    if (balancers === null) return this.#handOver(socket);
    // reset before it was accepted (a balancer's health check closes with RST): no peer, nothing to read or report
    if (socket.remoteAddress === undefined) {
      socket.destroy();
      return;
    }
    const trusted = fromBalancer(balancers, socket.remoteAddress ?? '');
    this.#reading.add(socket);
    new ProxyHeaderRead(socket, trusted, headersTimeoutMs, (read) => this.#afterHeader(socket, read));
  }

  #afterHeader(socket: Socket, read: HeaderRead): void {
    this.#reading.delete(socket);
    if (read.kind === 'refused') {
      this.#opts.log.info({ event: 'redirect_refused', reason: read.reason, remoteAddress: socket.remoteAddress, why: read.why }, `plain-HTTP connection refused: ${read.why}`);
      socket.destroy();
      return;
    }
    if (read.kind === 'closed' || (read.kind === 'header' && read.source !== null && !adoptSource(socket, read.source))) {
      socket.destroy();
      return;
    }
    this.#handOver(socket);
  }

  #handOver(socket: Socket): void {
    for (const serve of this.#serve) serve.call(this.#server, socket);
  }

  #answer(req: IncomingMessage, res: ServerResponse): void {
    let target = req.url ?? '';
    let authority = req.headers.host;
    const absolute = /^http:\/\/([^/?#]*)(.*)$/i.exec(target);
    if (absolute) {
      authority = absolute[1];
      target = absolute[2] || '/';
    }
    const host = authority === undefined || hasDuplicateHost(req.rawHeaders) ? null : hostFromAuthority(authority);
    if (host === null) return this.#refuse(req, res, 400, 'bad_request_target');
    // a plain absolute path only: "//host" would be protocol-relative, "\" is read as "/" by browsers
    if (target[0] !== '/' || target[1] === '/' || target[1] === '\\' || target.includes('\\')) return this.#refuse(req, res, 400, 'bad_request_target');
    if (target.startsWith(challengePrefix)) return this.#challenge(res, target.slice(challengePrefix.length));
    const config = this.#opts.config();
    if (config.ca.crlPath !== null && target === config.ca.crlPath) return void this.#crl(res, config.dataDir);
    if (this.#opts.config().hosts.lookup(host) === undefined) return this.#refuse(req, res, 421, 'unknown_host');

    const port = this.#opts.httpsPort();
    const location = `https://${isIP(host) === 6 ? `[${host}]` : host}${port === 443 ? '' : `:${port}`}${target}`;
    res.writeHead(308, { location, 'content-type': 'text/plain; charset=utf-8', 'content-length': 0, 'cache-control': 'no-store' });
    res.end();
  }

  #challenge(res: ServerResponse, token: string): void {
    const answer = tokenPattern.test(token) ? (this.#challenges?.(token) ?? null) : null;
    if (answer === null) {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
      res.end('unknown ACME challenge token\n');
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
    res.end(answer);
  }

  /**
   * The built-in CA's current CRL of the leaves — the intermediate's when
   * there is one, else the root's — DER as RFC 5280 §4.2.1.13 wants over
   * HTTP, for any Host: it is public and signed. Read per request (small, and
   * `ca revoke` replaces it at any time).
   */
  async #crl(res: ServerResponse, dataDir: string): Promise<void> {
    let der: Buffer;
    try {
      const crl = caCrlFiles(caFolder(dataDir));
      const pem = await readFile(crl.issuing, 'latin1').catch(() => readFile(crl.root, 'latin1'));
      der = Buffer.from(pem.replace(/-----(BEGIN|END) X509 CRL-----|\s+/g, ''), 'base64');
    } catch {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
      res.end('no CRL published yet; run portcullis ca init\n');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/pkix-crl', 'content-length': der.length, 'cache-control': 'max-age=60' });
    res.end(der);
  }

  #refuse(req: IncomingMessage, res: ServerResponse, status: 400 | 421, reason: Reason): void {
    this.#opts.log.info({ event: 'redirect_refused', reason, status, remoteAddress: req.socket.remoteAddress }, 'plain-HTTP request not redirected');
    const body = status === 400 ? 'Bad request: not redirected.\n' : 'This host is not served here.\n';
    res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), 'x-content-type-options': 'nosniff', connection: 'close' });
    res.end(body);
  }
}
