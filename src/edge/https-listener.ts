import { createServer, type AddressInfo, type BlockList, type Server, type Socket } from 'node:net';
import type { Server as TlsServer } from 'node:tls';
import { ipAdmitted, type IpRules } from '../access/index.js';
import type { Config, ListenAddress } from '../config/index.js';
import type { Reason } from '../errors.js';
import { maxClientHelloBytes, tlsAlert, type ClientHello, type TlsAlert } from './client-hello.js';
import { HelloPeek, type PeekOutcome } from './hello-peek.js';
import { helloSummaryOf, summarizeHello, type HelloSummary } from './fingerprints.js';
import { bindServer } from './bind.js';
import { endWithLinger } from './linger.js';
import { proxySignatureOf } from './proxy-header.js';
import { adoptSource, fromBalancer, ProxyHeaderRead, type HeaderRead } from './proxy-source.js';

/** A refusal the router decides on (a known site that cannot serve yet), with what the log line should say. */
export interface HelloRefusal {
  readonly refuse: Reason;
  readonly details: Readonly<Record<string, unknown>>;
  readonly message: string;
}

/** Picks the TLS server for a ClientHello on a socket; null (no site for the name) or a refusal refuses the handshake. */
export type HelloRouter = (hello: ClientHello, socket: Socket) => TlsServer | HelloRefusal | null;

/** Where the listener reports the connections it refuses before TLS (telemetry implements it). */
export interface RefusalReporter {
  refused(reason: Reason, remoteAddress: string, hello: HelloSummary | null, details: Readonly<Record<string, unknown>>, message: string): void;
}

/** The detector's blocks, as the listener asks them (telemetry implements it). */
export interface SourceGuard {
  /** Whether a source address is blocked: its connections are closed at accept. */
  blocked(address: string): boolean;
  /** Whether a ClientHello's JA4 is blocked for this source (when the detector is told to block fingerprints): refused before TLS. */
  fingerprintBlocked(ja4: string, address: string): boolean;
}

export interface HttpsListenerOptions {
  readonly route: HelloRouter;
  readonly events: RefusalReporter;
  readonly guard: SourceGuard;
}

/** A fatal TLS alert record (RFC 8446 §6), sent before any TLS state exists; one buffer per description. */
const alertRecords = new Map(Object.values(tlsAlert).map((description) => [description, Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, description])]));
const alertRecord = (description: TlsAlert): Buffer => alertRecords.get(description) as Buffer;
const alertHandshakeFailure = alertRecord(tlsAlert.handshakeFailure);

const plaintextBody = 'This port speaks HTTPS only. Use an https:// URL.\n';
const plaintextAnswer = Buffer.from(
  `HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${plaintextBody.length}\r\nConnection: close\r\n\r\n${plaintextBody}`,
);

function ignoreSocketError(): void {
  // The TLS layer or the refusal path reports what matters; a reset on the raw socket must not crash us.
}

/**
 * The TCP front of the HTTPS port. It owns accepting: each socket's first
 * bytes are read before any TLS work, plain HTTP is answered with a short 400,
 * garbage is dropped, and a ClientHello is handed to the TLS server of the
 * site its server name selects, or refused with an alert. A connection from
 * a balancer of `listen.proxyProtocol` starts with a PROXY header, read
 * before all that: the client it names is the connection's address for
 * every check and record that follows.
 */
export class HttpsListener {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  /** One 'close' listener for every socket: a closure per socket would cost each idle connection a few hundred bytes. */
  readonly #forget: (this: Socket) => void;
  readonly #opts: HttpsListenerOptions;
  /** The global ipAccess lists and the handshake timeout of the config in force: a reload applies them to new connections. */
  #ipAccess!: IpRules;
  #handshakeTimeoutMs!: number;
  /** The balancers whose PROXY headers are believed (`listen.proxyProtocol`); null when none, and then no connection is read for one. */
  #balancers!: BlockList | null;

  constructor(config: Config, opts: HttpsListenerOptions) {
    this.#opts = opts;
    this.apply(config);
    const sockets = this.#sockets;
    this.#forget = function (this: Socket) {
      sockets.delete(this);
    };
    this.#server = createServer({ noDelay: true, pauseOnConnect: true }, (socket) => this.#accept(socket));
  }

  apply(config: Config): void {
    this.#ipAccess = config.ipAccess;
    this.#handshakeTimeoutMs = config.timeouts.handshakeMs;
    this.#balancers = config.listen.proxyProtocol;
  }

  #accept(socket: Socket): void {
    // reset before it was accepted (a balancer's health check closes with RST): no peer, nothing to serve or report
    if (socket.remoteAddress === undefined) {
      socket.destroy();
      return;
    }
    if (this.#balancers !== null && fromBalancer(this.#balancers, socket.remoteAddress ?? '')) {
      // the balancer's own address is not the client's: the lists and blocks are checked once the header names the client
      this.#track(socket);
      const acceptedAt = performance.now();
      new ProxyHeaderRead(socket, true, this.#handshakeTimeoutMs, (read) => this.#relayed(socket, read, acceptedAt));
      return;
    }
    if (!this.#admitted(socket)) return;
    this.#track(socket);
    const acceptedAt = performance.now();
    new HelloPeek(socket, this.#handshakeTimeoutMs, (outcome) => this.#dispatch(socket, outcome, acceptedAt));
  }

  /** A denied or blocked source gets nothing: no ClientHello is read, no TLS work is done. */
  #admitted(socket: Socket): boolean {
    if (!ipAdmitted(this.#ipAccess, socket.remoteAddress ?? '')) {
      this.#opts.events.refused('ip_denied', socket.remoteAddress ?? '', null, { list: 'ipAccess' }, 'connection from a source outside ipAccess closed at accept');
      socket.destroy();
      return false;
    }
    if (this.#opts.guard.blocked(socket.remoteAddress ?? '')) {
      this.#opts.events.refused('blocked', socket.remoteAddress ?? '', null, { blockedBy: 'address' }, 'connection from a blocked source closed at accept');
      socket.destroy();
      return false;
    }
    return true;
  }

  #track(socket: Socket): void {
    this.#sockets.add(socket);
    socket.on('close', this.#forget);
    socket.on('error', ignoreSocketError);
  }

  /** After a balancer's PROXY header: the connection goes on as its client's, within what is left of the handshake time. */
  #relayed(socket: Socket, read: HeaderRead, acceptedAt: number): void {
    if (read.kind === 'refused') {
      this.#refuse(socket, read.reason, null, { why: read.why }, 'connection from a balancer of listen.proxyProtocol refused: no valid PROXY header');
      return;
    }
    if (read.kind !== 'header' || (read.source !== null && !adoptSource(socket, read.source))) {
      socket.destroy();
      return;
    }
    if (!this.#admitted(socket)) return;
    const left = Math.max(1, this.#handshakeTimeoutMs - (performance.now() - acceptedAt));
    new HelloPeek(socket, left, (outcome) => this.#dispatch(socket, outcome, acceptedAt));
  }

  #dispatch(socket: Socket, outcome: PeekOutcome, acceptedAt: number): void {
    switch (outcome.kind) {
      case 'hello': {
        const summary = summarizeHello(socket, outcome.hello, acceptedAt);
        if (this.#opts.guard.fingerprintBlocked(summary.ja4, socket.remoteAddress ?? '')) {
          this.#refuse(socket, 'blocked', null, { blockedBy: 'fingerprint' }, 'ClientHello with a blocked JA4 closed before TLS');
          return;
        }
        const server = this.#opts.route(outcome.hello, socket);
        if (server && 'refuse' in server) {
          this.#refuse(socket, server.refuse, alertHandshakeFailure, server.details, server.message);
          return;
        }
        if (server) {
          server.emit('connection', socket);
          return;
        }
        const name = outcome.hello.serverName;
        this.#refuse(socket, name ? 'unknown_sni' : 'missing_sni', alertRecord(name ? tlsAlert.unrecognizedName : tlsAlert.handshakeFailure), {});
        return;
      }
      case 'not_tls': {
        // only a balancer's header is believed, and only at the start of its connection (read in #relayed)
        const signature = this.#balancers === null ? 'none' : proxySignatureOf(outcome.head);
        if (signature === 'v1' || signature === 'v2') {
          this.#refuse(socket, 'proxy_protocol_untrusted', null, { why: `a PROXY ${signature} header from a source outside listen.proxyProtocol` }, 'PROXY header from a source that is not a balancer of listen.proxyProtocol refused; it is not believed');
          return;
        }
        if (outcome.looksLikeHttp) this.#refuse(socket, 'plaintext_http', plaintextAnswer, {});
        else this.#refuse(socket, 'malformed_client_hello', null, { why: 'not a TLS handshake record' });
        return;
      }
      case 'malformed':
        this.#refuse(socket, 'malformed_client_hello', outcome.alert === null ? null : alertRecord(outcome.alert), { why: outcome.why });
        return;
      case 'too_large':
        // OpenSSL's answer at its own, larger, limit (excessive message size)
        this.#refuse(socket, 'malformed_client_hello', alertRecord(tlsAlert.illegalParameter), { why: `ClientHello larger than ${maxClientHelloBytes} bytes` });
        return;
      case 'timeout':
        this.#refuse(socket, 'handshake_timeout', null, {});
        return;
      case 'closed':
        socket.destroy();
        return;
    }
  }

  #refuse(socket: Socket, reason: Reason, answer: Buffer | null, details: Record<string, unknown>, message = 'connection refused before TLS'): void {
    this.#opts.events.refused(reason, socket.remoteAddress ?? '', helloSummaryOf(socket), details, message);
    if (!answer) {
      socket.destroy();
      return;
    }
    endWithLinger(socket, answer);
  }

  /** Binds the address; rejects with PCL_LISTEN_FAILED naming the key, the address and the fix. */
  listen(address: ListenAddress, key: string): Promise<AddressInfo> {
    return bindServer(this.#server, address, key);
  }

  /** Stops accepting; open connections go on. Resolves once the last one has closed. */
  stopAccepting(): Promise<void> {
    return new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  /** Destroys every open connection. */
  destroyAll(): void {
    for (const socket of this.#sockets) socket.destroy();
  }

  /** Open TCP connections, TLS or not yet. */
  get connections(): number {
    return this.#sockets.size;
  }
}
