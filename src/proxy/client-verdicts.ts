import type { Site } from '../config/index.js';
import type { ClientInventory, ConnectionEvents } from '../telemetry/index.js';
import type { Logger, Metrics } from '../observe/index.js';
import type { ConnectionInfo } from '../tls/index.js';
import type { RevocationChecker, RevocationDecision } from '../trust/index.js';

/**
 * Completes the verdict on a connection's client certificate with the
 * revocation decision, once per connection (resumed sessions included), and
 * records the rejections: one event and one metric per refused certificate.
 */
export class ClientVerdicts {
  readonly #revocation: RevocationChecker;
  readonly #log: Logger;
  readonly #metrics: Metrics;
  readonly #events: ConnectionEvents;

  readonly #inventory: ClientInventory;

  constructor(revocation: RevocationChecker, inventory: ClientInventory, log: Logger, metrics: Metrics, events: ConnectionEvents) {
    this.#revocation = revocation;
    this.#inventory = inventory;
    this.#log = log;
    this.#metrics = metrics;
    this.#events = events;
  }

  /** A connection to a mutual-TLS site has finished its handshake and its certificate was judged. */
  judged(info: ConnectionInfo, site: Site): void {
    const client = info.client;
    if (client?.status === 'invalid') {
      this.#events.clientCertRejected(info, client.reason, client.detail);
      return;
    }
    if (client?.status !== 'valid') {
      if (site.clientAuth?.mode === 'require') this.#events.clientCertRejected(info, 'no_certificate', null);
      return;
    }
    this.#inventory.seen(client.identity, site.id);
    let decision: RevocationDecision | Promise<RevocationDecision>;
    try {
      decision = this.#revocation.check({ leaf: client.leaf, chain: client.chain }, site.clientAuth?.revocation ?? null);
    } catch (err) {
      decision = this.#failed(err);
    }
    if (!(decision instanceof Promise)) {
      this.#apply(info, site, decision);
      return;
    }
    info.pending = decision
      .catch((err: unknown) => this.#failed(err))
      .then((d) => {
        info.pending = null;
        this.#apply(info, site, d);
      });
  }

  /** A bug in the check must not admit a certificate nor take the process down: no decision, and the policy says what then. */
  #failed(err: unknown): RevocationDecision {
    this.#log.error({ event: 'revocation_check_failed', err }, 'revocation check failed inside the proxy');
    return { outcome: 'unavailable', detail: `the revocation check failed: ${(err as Error)?.message ?? String(err)}`, failClosed: true };
  }

  /**
   * After a deny-list change: whether this open connection presented a
   * certificate the list now blocks; if so its verdict becomes revoked (the
   * caller closes it) and the rejection is recorded.
   */
  nowDenied(info: ConnectionInfo): boolean {
    const client = info.client;
    if (client?.status !== 'valid') return false;
    const decision = this.#revocation.denied({ leaf: client.leaf, chain: client.chain });
    if (!decision) return false;
    this.#apply(info, info.site as Site, decision, { closedLiveConnection: true });
    return true;
  }

  #apply(info: ConnectionInfo, site: Site, d: RevocationDecision, extra: Record<string, unknown> = {}): void {
    const revocation = site.clientAuth?.revocation ?? null;
    const policy = revocation?.onUnavailable ?? 'reject';
    // sites without CRL or OCSP are counted only when the deny list refuses a certificate
    if (revocation || d.outcome !== 'good') this.#metrics.revocationChecks.inc({ result: d.outcome, source: d.outcome === 'revoked' ? d.source : 'none', policy });
    const client = info.client;
    if (d.outcome === 'good' || client?.status !== 'valid') return;
    if (d.outcome === 'unavailable' && policy === 'allow' && !d.failClosed) {
      this.#log.warn(
        { event: 'revocation_unavailable_allowed', site: site.id, sni: info.serverName, remoteAddress: info.remoteAddress, subject: client.identity.subject, serial: client.identity.serial, detail: d.detail },
        'no fresh revocation answer for a client certificate; admitted because clientAuth.onRevocationUnavailable is allow',
      );
      return;
    }
    const reason = d.outcome === 'revoked' ? 'revoked' : 'revocation_unavailable';
    info.client = { status: 'invalid', reason, detail: d.detail, identity: client.identity };
    this.#events.clientCertRejected(info, reason, d.detail, d.outcome === 'revoked' ? { source: d.source, revokedCertificate: d.certificate, ...extra } : extra);
  }
}
