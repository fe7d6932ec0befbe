import type { Site } from '../config/index.js';
import type { ClientInventory, ConnectionEvents } from '../telemetry/index.js';
import type { Logger, Metrics } from '../observe/index.js';
import type { ConnectionInfo } from '../tls/index.js';
import type { ClientCertificate, RevocationChecker, RevocationDecision } from '../trust/index.js';

/**
 * Completes the verdict on a connection's client certificate with the
 * revocation decision, once per connection (resumed sessions included), and
 * records the rejections: one event and one metric per refused certificate.
 * Verdicts are values: this returns them, the TLS layer carries them.
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

  /**
   * The final verdict on the client certificate of a connection to a
   * mutual-TLS site: the handshake's (`info.client`, the same object when it
   * stands), or its promise while the revocation check waits for an answer.
   */
  judge(info: ConnectionInfo, site: Site): ClientCertificate | Promise<ClientCertificate> {
    // asked only on sites with clientAuth, where the handshake always judged one
    const client = info.client as ClientCertificate;
    if (client.status === 'invalid') {
      this.#events.clientCertRejected(info, client.reason, client.detail);
      return client;
    }
    if (client.status === 'none') {
      if (site.clientAuth?.mode === 'require') this.#events.clientCertRejected(info, 'no_certificate', null);
      return client;
    }
    this.#inventory.seen(client.identity, site.id);
    let decision: RevocationDecision | Promise<RevocationDecision>;
    try {
      decision = this.#revocation.check({ leaf: client.leaf, chain: client.chain }, site.clientAuth?.revocation ?? null);
    } catch (err) {
      decision = this.#failed(err);
    }
    if (!(decision instanceof Promise)) return this.#apply(info, client, site, decision);
    return decision.catch((err: unknown) => this.#failed(err)).then((d) => this.#apply(info, client, site, d));
  }

  /** A bug in the check must not admit a certificate nor take the process down: no decision, and the policy says what then. */
  #failed(err: unknown): RevocationDecision {
    this.#log.error({ event: 'revocation_check_failed', err }, 'revocation check failed inside the proxy');
    return { outcome: 'unavailable', detail: `the revocation check failed: ${(err as Error)?.message ?? String(err)}`, failClosed: true };
  }

  /**
   * After a deny-list change: whether this open connection presented a
   * certificate the list now blocks; if so the rejection is recorded (the
   * caller closes the connection).
   */
  nowDenied(info: ConnectionInfo): boolean {
    const client = info.client;
    if (client?.status !== 'valid') return false;
    const decision = this.#revocation.denied({ leaf: client.leaf, chain: client.chain });
    if (!decision) return false;
    this.#apply(info, client, info.site as Site, decision, { closedLiveConnection: true });
    return true;
  }

  /** The verdict on a valid certificate once revocation has answered `d`: `client` itself, or invalid (recorded). */
  #apply(info: ConnectionInfo, client: ClientCertificate & { status: 'valid' }, site: Site, d: RevocationDecision, extra: Record<string, unknown> = {}): ClientCertificate {
    const revocation = site.clientAuth?.revocation ?? null;
    const policy = revocation?.onUnavailable ?? 'reject';
    // sites without CRL or OCSP are counted only when the deny list refuses a certificate
    if (revocation || d.outcome !== 'good') this.#metrics.revocationChecks.inc({ result: d.outcome, source: d.outcome === 'revoked' ? d.source : 'none', policy });
    if (d.outcome === 'good') return client;
    if (d.outcome === 'unavailable' && policy === 'allow' && !d.failClosed) {
      this.#log.warn(
        { event: 'revocation_unavailable_allowed', site: site.id, sni: info.serverName, remoteAddress: info.remoteAddress, subject: client.identity.subject, serial: client.identity.serial, detail: d.detail },
        'no fresh revocation answer for a client certificate; admitted because clientAuth.onRevocationUnavailable is allow',
      );
      return client;
    }
    const reason = d.outcome === 'revoked' ? 'revoked' : 'revocation_unavailable';
    this.#events.clientCertRejected(info, reason, d.detail, d.outcome === 'revoked' ? { source: d.source, revokedCertificate: d.certificate, ...extra } : extra);
    return { status: 'invalid', reason, detail: d.detail, identity: client.identity };
  }
}
