import type { HelloSummary } from '../edge/index.js';
import type { Reason } from '../errors.js';
import type { ConnectionInfo } from '../tls/index.js';
import type { EventBus, TelemetryEvent } from '../observe/index.js';
import type { Metrics } from '../observe/index.js';

/**
 * The events that account for a connection: every TCP connection gets one of
 * the first two; mutual-TLS refusals add the third; a connection the proxy
 * ends because its client abused it adds the fourth.
 */
export type ConnectionEventName = 'connection_accepted' | 'handshake_failed' | 'client_cert_rejected' | 'connection_closed';

/** The fields every connection event has, whatever else it carries. */
export interface ConnectionEvent extends TelemetryEvent {
  readonly event: ConnectionEventName;
  readonly remoteAddress: string;
  /** Null on connection_accepted. */
  readonly reason: Reason | null;
  readonly site: string | null;
  readonly sni: string | null;
  /** From the ClientHello; null when none arrived (plaintext, garbage, blocked). */
  readonly ja4: string | null;
  readonly ja3: string | null;
  readonly offered: string | null;
  readonly weakness: HelloSummary['weakness'];
  /** Whether the ClientHello carried a post-quantum hybrid key share; null when none arrived. */
  readonly postQuantum: boolean | null;
}

/** Refusals the operator decided on (the detector's blocks, the ipAccess lists): counted and on the bus, logged at debug. */
const quiet: ReadonlySet<Reason> = new Set<Reason>(['blocked', 'ip_denied']);

const names: ReadonlySet<string> = new Set<ConnectionEventName>(['connection_accepted', 'handshake_failed', 'client_cert_rejected', 'connection_closed']);

export const isConnectionEvent = (e: TelemetryEvent): e is ConnectionEvent => names.has(e.event);

const helloFields = (hello: HelloSummary | null) => ({ sni: hello?.sni ?? null, ja4: hello?.ja4 ?? null, ja3: hello?.ja3 ?? null, offered: hello?.offered ?? null, weakness: hello?.weakness ?? null, postQuantum: hello?.postQuantum ?? null });

/** What every event about an established TLS connection says of it. */
const tlsFields = (conn: ConnectionInfo) => ({
  site: conn.site?.id ?? null,
  remoteAddress: conn.remoteAddress,
  ...helloFields(conn.hello),
  sni: conn.serverName,
  tlsVersion: conn.tlsVersion,
  cipher: conn.cipher,
  group: conn.group,
  alpn: conn.alpn,
  resumed: conn.resumed,
});

const identityOf = (conn: ConnectionInfo) => (conn.client && conn.client.status !== 'none' ? conn.client.identity : null);

/**
 * Accounts for connections: one metric update and one event on the bus per
 * outcome, with the same fields wherever the outcome was decided (the edge,
 * the TLS stack, the client-certificate checks). The reasons share their
 * vocabulary with the HTTP answers (`docs/errors.md`).
 */
export class ConnectionEvents {
  constructor(
    readonly bus: EventBus,
    private readonly metrics: Metrics,
  ) {}

  /** A connection refused before or during the handshake. Blocked and denied sources are logged at debug only: a flood must not flood the log. */
  refused(reason: Reason, remoteAddress: string, hello: HelloSummary | null, details: Readonly<Record<string, unknown>>, message: string): void {
    this.metrics.refusedConnections.inc({ reason });
    if (reason === 'unsupported_protocol' && hello) this.metrics.legacyAttempts.inc({ offered: hello.offered });
    this.bus.publish(quiet.has(reason) ? 'debug' : 'info', { event: 'handshake_failed', reason, remoteAddress, site: null, ...helloFields(hello), ...details }, message);
  }

  accepted(info: ConnectionInfo, handshakeMs: number | null): void {
    this.metrics.handshakes.inc({ version: info.tlsVersion, cipher: info.cipher, group: info.group ?? 'unknown', resumed: String(info.resumed) });
    const identity = identityOf(info);
    this.bus.publish(
      'info',
      {
        event: 'connection_accepted',
        reason: null,
        ...tlsFields(info),
        handshakeMs: handshakeMs === null ? null : Math.round(handshakeMs * 100) / 100,
        clientCert: info.client?.status ?? null,
        clientSubject: identity?.subject ?? null,
      },
      'TLS connection accepted',
    );
  }

  /** An established connection ended by the proxy because its client exceeded a per-connection limit (counted by the detector too). */
  closed(conn: ConnectionInfo, reason: Reason, detail: string): void {
    this.metrics.closedConnections.inc({ reason });
    this.bus.publish('warn', { event: 'connection_closed', reason, detail, ...tlsFields(conn) }, `connection closed: ${reason} (${detail})`);
  }

  /** A client certificate refused (or missing where one is required), with what was presented. */
  clientCertRejected(conn: ConnectionInfo, reason: Reason, detail: string | null, extra: Readonly<Record<string, unknown>> = {}): void {
    this.metrics.clientAuthFailures.inc({ reason });
    const identity = identityOf(conn);
    this.bus.publish(
      'info',
      {
        event: 'client_cert_rejected',
        reason,
        detail,
        ...tlsFields(conn),
        subject: identity?.subject ?? null,
        issuer: identity?.issuer ?? null,
        serial: identity?.serial ?? null,
        fingerprint: identity?.fingerprint ?? null,
        ...extra,
      },
      `client certificate refused: ${reason}`,
    );
  }
}
