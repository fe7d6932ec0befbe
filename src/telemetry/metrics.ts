import { Counter, Registry } from 'prom-client';
import type { Reason } from '../errors.js';

/**
 * The instance's Prometheus registry. Label values come from bounded
 * vocabularies (reason codes), never from addresses or names clients choose.
 */
export class Metrics {
  readonly registry = new Registry();

  /** Connections refused before or during the TLS handshake, by reason code. */
  readonly refusedConnections = new Counter<'reason'>({
    name: 'portcullis_connections_refused_total',
    help: 'Connections refused before or during the TLS handshake, by reason',
    labelNames: ['reason'],
    registers: [this.registry],
  });

  /** Client certificates refused (or missing where required), by reason code. */
  readonly clientAuthFailures = new Counter<'reason'>({
    name: 'portcullis_client_auth_failures_total',
    help: 'Client certificates refused, or missing where one is required, by reason',
    labelNames: ['reason'],
    registers: [this.registry],
  });

  refused(reason: Reason): void {
    this.refusedConnections.inc({ reason });
  }
}
