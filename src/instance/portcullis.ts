import type { AddressInfo } from 'node:net';
import type { ApiKeyRecord } from '../access/index.js';
import type { AcmeChallengeSet } from '../acme/index.js';
import type { CertificatePair, Config } from '../config/index.js';
import { PortcullisError } from '../errors.js';
import type { EventBus, Logger, Metrics } from '../observe/index.js';
import type { RedisLink } from '../state/index.js';
import type { AccessLog } from '../telemetry/index.js';
import { checkRotation, replacements, type TicketKeyRing } from '../tls/index.js';
import type { DenyEntry } from '../trust/index.js';
import { assemble, type Assembly } from './assembly.js';
import { Listeners } from './listeners.js';

export interface Portcullis {
  /** Where the HTTPS listener is bound (after the latest reload). */
  readonly address: AddressInfo;
  /** Where the redirect listener is bound, when `listen.http` is configured. */
  readonly httpAddress: AddressInfo | null;
  /** The config in force. */
  readonly config: Config;
  /**
   * Switches to a new, already validated config without dropping a connection:
   * sites keep their servers and get new certificates for new handshakes,
   * routes and upstreams apply to every request from now on, a changed listen
   * address is bound before the old one stops accepting. On failure (the new
   * address cannot be bound) nothing changes and the error is thrown.
   */
  reload(config: Config): Promise<void>;
  /**
   * Stops accepting, lets in-flight requests finish (HTTP/1.1 connections close
   * after their current response, HTTP/2 sessions get GOAWAY), and closes
   * whatever is left once `deadlineMs` has passed.
   */
  drain(deadlineMs: number): Promise<void>;
  /**
   * Replaces the deny list: new connections presenting a listed certificate
   * (leaf or CA of its chain) are refused as revoked, and open connections
   * that presented one are closed at once. Returns how many were closed.
   */
  setDenyList(entries: readonly DenyEntry[]): number;
  /** Replaces the API keys in force: every request from now on is checked against these. */
  setApiKeys(records: readonly ApiKeyRecord[]): void;
  /** The ACME challenges to answer from now on: http-01 on the redirect listener, tls-alpn-01 on the HTTPS listener. */
  setAcmeChallenges(set: AcmeChallengeSet): void;
  /** Writes the per-process summaries under dataDir (client inventory, weak clients) now rather than within the minute. */
  flushSummaries(): Promise<void>;
  /** Every connection event and detector alert, as it happens; the last ones are kept (EventBus.recent). */
  readonly events: EventBus;
  /** Stops at once: every connection and upstream pool is closed. Safe to call twice. */
  close(): Promise<void>;
  readonly metrics: Metrics;
}

export interface StartOptions {
  /**
   * Ticket keys managed by the caller (a cluster worker gets its primary's).
   * Without it the instance rotates its own keys.
   */
  readonly tickets?: TicketKeyRing;
  /** Where request lines go; none when the access log is off. */
  readonly accessLog?: AccessLog | null;
  /** Names this process's files under dataDir (the client certificate inventory): "main", or "worker-<id>". */
  readonly processName?: string;
  /** The API keys in force from the start (the store under dataDir). */
  readonly apiKeys?: readonly ApiKeyRecord[];
  /** Certificates blocked from the start (the persisted deny list). */
  readonly denyList?: readonly DenyEntry[];
  /** ACME challenges to answer from the first connection (a worker that starts while an order runs). */
  readonly acmeChallenges?: AcmeChallengeSet;
  /** The cluster's Redis (`state.backend: redis`), opened and closed by the caller; none with the memory backend. */
  readonly cluster?: RedisLink | null;
}


/**
 * Wires the data path: TCP accept and ClientHello peek (edge) → the site's
 * TLS server (tls) → HTTP/1.1 + HTTP/2 → request pipeline (proxy) → upstream
 * pools. Rejects with PCL_LISTEN_FAILED when the address cannot be bound.
 */
export async function startPortcullis(config: Config, log: Logger, options: StartOptions = {}): Promise<Portcullis> {
  const parts = assemble(config, log, options);
  let listeners: Listeners;
  try {
    await parts.ready;
    listeners = await Listeners.open(config, parts.listenerOptions, { config: () => parts.state.config, acmeAnswer: (token) => parts.acmeAnswer(token) }, log);
  } catch (err) {
    await parts.stop();
    throw err;
  }
  parts.metrics.watchConnections(() => listeners.connections);
  return new Instance(parts, listeners, log);
}

class Instance implements Portcullis {
  #closing: Promise<void> | null = null;

  constructor(
    private readonly parts: Assembly,
    private readonly listeners: Listeners,
    private readonly log: Logger,
  ) {}

  get address(): AddressInfo {
    return this.listeners.address;
  }

  get httpAddress(): AddressInfo | null {
    return this.listeners.httpAddress;
  }

  get config(): Config {
    return this.parts.state.config;
  }

  get events(): EventBus {
    return this.parts.bus;
  }

  get metrics(): Metrics {
    return this.parts.metrics;
  }

  async reload(next: Config): Promise<void> {
    const { parts } = this;
    const served = parts.state;
    if (served.draining) throw new PortcullisError('PCL_RELOAD_FAILED', 'the instance is stopping; a reload would open listeners again');
    // checked before anything changes: on failure every served certificate stays
    const rotation = checkRotation(served.config, next);
    if (rotation.length > 0) throw new PortcullisError('PCL_RELOAD_FAILED', `certificate rotation refused; the served certificates stay:\n  ${rotation.join('\n  ')}`);
    const rotated = [...replacements(served.config, next)];
    // bound before anything changes, so a failure leaves everything as it was
    await this.listeners.move(served.config, next);
    this.listeners.apply(next);
    for (const c of parts.components) c.apply(next);
    for (const { site, pair } of rotated) logRotation(this.log, site.id, pair);
    parts.state = parts.stateFor(next);
    // requests in flight finish on the old pools, which then close
    void served.upstreams.close();
  }

  async drain(deadlineMs: number): Promise<void> {
    this.parts.state.draining = true;
    const open = await this.listeners.drain(deadlineMs, () => this.parts.servers.drain());
    if (open > 0) this.log.warn({ event: 'drain_deadline', openConnections: open }, `drain deadline reached; closing ${open} connection(s)`);
    await this.close();
  }

  setDenyList(entries: readonly DenyEntry[]): number {
    const list = this.parts.revocation.setDenyList(entries);
    const closed = this.parts.servers.closeConnections((info) => this.parts.verdicts.nowDenied(info));
    this.log.info({ event: 'deny_list_applied', entries: list.size, closedConnections: closed }, `deny list applied: ${list.size} entr${list.size === 1 ? 'y' : 'ies'}, ${closed} open connection(s) closed`);
    return closed;
  }

  setApiKeys(records: readonly ApiKeyRecord[]): void {
    this.parts.apiKeys.set(records);
    this.log.info({ event: 'api_keys_applied', keys: this.parts.apiKeys.size }, `API keys applied: ${this.parts.apiKeys.size} in the store`);
  }

  setAcmeChallenges(set: AcmeChallengeSet): void {
    this.parts.setAcmeChallenges(set);
  }

  async flushSummaries(): Promise<void> {
    await Promise.all([this.parts.inventory.flush(), this.parts.weakClients.flush()]);
  }

  close(): Promise<void> {
    this.#closing ??= Promise.all([this.listeners.close(), this.parts.stop()]).then(() => {});
    return this.#closing;
  }
}

function logRotation(log: Logger, site: string, pair: CertificatePair): void {
  const notAfter = new Date(pair.leaf.validTo).toISOString();
  log.info(
    { event: 'certificate_rotated', site, file: pair.certFile, fingerprint: `sha256:${pair.leaf.fingerprint256}`, subject: pair.leaf.subject.split('\n').join(', '), notAfter },
    `site ${site} now serves ${pair.certFile} (valid until ${notAfter})`,
  );
}
