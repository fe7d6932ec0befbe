import type { IncomingMessage } from 'node:http';
import type { Http2ServerRequest, ServerHttp2Session } from 'node:http2';
import type { TLSSocket } from 'node:tls';
import type { Site, TlsProfile } from '../config/index.js';
import type { HelloSummary } from '../edge/index.js';
import { verifyClientCertificate, type ClientCertificate } from '../trust/index.js';
import { negotiatedGroup } from './negotiated-group.js';

/** What the proxy knows about a TLS connection, captured once after the handshake. */
export interface ConnectionInfo {
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly tlsVersion: string;
  readonly cipher: string;
  /** The key-exchange group, e.g. "X25519MLKEM768" (see negotiated-group.ts); null when the edge did not see the ClientHello. */
  readonly group: string | null;
  /** The server name the client sent (SNI), lower case; null without SNI. */
  readonly serverName: string | null;
  readonly alpn: string;
  readonly resumed: boolean;
  /** What the edge read from the client's ClientHello (JA4, JA3, weakness); null when it did not see it. */
  readonly hello: HelloSummary | null;
  /** The site whose certificate was served. */
  readonly site: Site | null;
  /**
   * The verdict on the client certificate (null on sites without mutual TLS):
   * the handshake's, with the revocation check's when that answered at once.
   * Final unless `settling` is set.
   */
  readonly client: ClientCertificate | null;
  /**
   * The final verdict while the revocation check waits for a CRL or OCSP
   * answer (it can only refuse what `client` admitted); requests wait for it.
   * Null when `client` is final.
   */
  readonly settling: Promise<ClientCertificate> | null;
}

const kConnection = Symbol('portcullis.connection');
const kTlsSocket = Symbol('portcullis.tlsSocket');

interface Tagged {
  [kConnection]?: ConnectionInfo;
  [kTlsSocket]?: TLSSocket;
}

/**
 * The negotiated parameters take a handful of values: one copy of each is kept
 * rather than one per connection (each read from the TLS socket is a new string).
 * Bounded, so names a client chooses cannot grow it without end.
 */
const interned = new Map<string, string>();
function intern(value: string): string {
  const known = interned.get(value);
  if (known !== undefined) return known;
  if (interned.size < 256) interned.set(value, value);
  return value;
}

/** Reads the negotiated parameters of a finished handshake. */
export function describeConnection(socket: TLSSocket, site: Site | null, hello: HelloSummary | null, profile: TlsProfile): ConnectionInfo {
  const clientAuth = site?.clientAuth ?? null;
  const servername = (socket as TLSSocket & { servername?: string | false }).servername;
  const tlsVersion = intern(socket.getProtocol() ?? 'unknown');
  return {
    remoteAddress: socket.remoteAddress ?? '',
    remotePort: socket.remotePort ?? 0,
    tlsVersion,
    cipher: intern(socket.getCipher()?.standardName ?? 'unknown'),
    group: negotiatedGroup(hello, tlsVersion, profile),
    serverName: servername ? intern(servername.toLowerCase()) : null,
    alpn: intern(socket.alpnProtocol || 'http/1.1'),
    resumed: socket.isSessionReused(),
    hello,
    site,
    // judged on every connection, resumed ones too: a resumed session is never a reason to skip it
    client: clientAuth ? verifyClientCertificate(socket, clientAuth) : null,
    settling: null,
  };
}

/**
 * The connection with the revocation check's verdict on its client
 * certificate: the same object when the check confirmed the handshake's.
 * The one place a verdict goes from pending to final.
 */
export function withVerdict(info: ConnectionInfo, verdict: ClientCertificate | Promise<ClientCertificate>): ConnectionInfo {
  if (verdict === info.client) return info;
  return verdict instanceof Promise ? { ...info, settling: verdict } : { ...info, client: verdict };
}

export function tagSocket(socket: TLSSocket, info: ConnectionInfo): void {
  (socket as Tagged)[kConnection] = info;
  // an HTTP/2 session shows its socket only through a proxy that refuses to close it
  (socket as Tagged)[kTlsSocket] = socket;
}

/** HTTP/2 requests reach their connection through the session; tag it when it is created. Returns the connection. */
export function tagSession(session: ServerHttp2Session): ConnectionInfo | undefined {
  const info = (session.socket as unknown as Tagged)[kConnection];
  if (info) (session as unknown as Tagged)[kConnection] = info;
  return info;
}

/** Forgets a closed session's connection: Node may keep a closed session reachable for a while (see http2-guard.ts). */
export function untagSession(session: ServerHttp2Session): void {
  (session as unknown as Tagged)[kConnection] = undefined;
}

/** The TLS socket under an HTTP/2 session (tagged by `tagSocket`), which the proxy may close. */
export function tlsSocketOf(session: ServerHttp2Session): TLSSocket {
  return (session.socket as unknown as Tagged)[kTlsSocket] as TLSSocket;
}

/** The connection of a TLS socket that finished its handshake. */
export function connectionOfSocket(socket: TLSSocket): ConnectionInfo | undefined {
  return (socket as Tagged)[kConnection];
}

/** The connection a request arrived on. */
export function connectionOf(req: IncomingMessage | Http2ServerRequest): ConnectionInfo | undefined {
  if (req.httpVersionMajor === 2) return ((req as Http2ServerRequest).stream.session as unknown as Tagged | undefined)?.[kConnection];
  return (req.socket as unknown as Tagged)[kConnection];
}
