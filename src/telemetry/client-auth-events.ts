import type { Reason } from '../errors.js';
import type { ConnectionInfo } from '../tls/index.js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';

/**
 * One event and one metric increment per refused client certificate, with
 * what was presented: the vocabulary of reasons is shared with the HTTP
 * answers (`docs/errors.md`).
 */
export function recordClientAuthFailure(log: Logger, metrics: Metrics, conn: ConnectionInfo, reason: Reason, detail: string | null, extra: Record<string, unknown> = {}): void {
  metrics.clientAuthFailed(reason, conn.remoteAddress);
  const client = conn.client;
  const identity = client && client.status !== 'none' ? client.identity : null;
  log.info(
    {
      event: 'client_cert_rejected',
      reason,
      detail,
      site: conn.site?.id ?? null,
      sni: conn.serverName,
      remoteAddress: conn.remoteAddress,
      tlsVersion: conn.tlsVersion,
      resumed: conn.resumed,
      subject: identity?.subject ?? null,
      issuer: identity?.issuer ?? null,
      serial: identity?.serial ?? null,
      fingerprint: identity?.fingerprint ?? null,
      ...extra,
    },
    `client certificate refused: ${reason}`,
  );
}
