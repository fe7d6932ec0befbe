import { isIPv6 } from 'node:net';
import type { Config } from '../config/index.js';
import type { Reason } from '../errors.js';
import { AlertWebhook } from './alert-webhook.js';
import { isConnectionEvent, type ConnectionEvent } from './connection-events.js';
import { Detector, type BlockDecision } from './detector.js';
import type { EventBus } from '../observe/index.js';
import type { Logger } from '../observe/index.js';
import type { Metrics } from '../observe/index.js';

/** A block the detector decided: a source address, or a JA4 (refused only with detector.fingerprint.block); `until` in ms since the epoch. */
export interface DetectorBlock {
  readonly kind: 'source' | 'ja4';
  readonly key: string;
  readonly until: number;
}

/**
 * Failures that are not the source's doing, and so never count against it. A
 * missing or malformed PROXY header is reported with the address of a
 * balancer of listen.proxyProtocol: blocking it would cut off every client behind it.
 */
const notCounted: ReadonlySet<Reason> = new Set<Reason>(['blocked', 'ip_denied', 'certificate_pending', 'policy_changed', 'proxy_protocol_missing', 'proxy_protocol_malformed']);

/**
 * The detector wired to the instance. It hears every refused connection and
 * client-certificate failure on the event bus and counts it twice: against
 * the source address, which is blocked past `detector.threshold`
 * (`source_blocked`), and against the ClientHello's JA4, which is flagged
 * past `detector.fingerprint.threshold` (`fingerprint_flagged`) and blocked
 * only when `detector.fingerprint.block` says so. Allow-listed sources never
 * count. Alerts go to the bus (hence the log) and to the webhook when one is
 * configured. Failures are counted per process; with state.backend: redis
 * the blocks are shared with the cluster (`shared-blocks.ts`).
 */
export class ProbeGuard {
  readonly #sources: Detector;
  readonly #fingerprints: Detector;
  #config: Config['detector'];
  #webhook: AlertWebhook | null = null;
  #webhookUrl: string | null = null;
  readonly #unsubscribe: () => void;
  #share: ((block: DetectorBlock) => void) | null = null;

  constructor(
    config: Config,
    private readonly metrics: Metrics,
    private readonly bus: EventBus,
    private readonly log: Logger,
  ) {
    this.#config = config.detector;
    this.#sources = new Detector(this.#sourceSettings());
    this.#fingerprints = new Detector(this.#fingerprintSettings());
    this.apply(config);
    this.#unsubscribe = bus.subscribe((e) => {
      if (isConnectionEvent(e) && e.reason !== null && !notCounted.has(e.reason)) this.#failed(e);
    });
    metrics.watchBlocked(() => this.#sources.blocked().length);
  }

  #sourceSettings() {
    const d = this.#config;
    return { threshold: d.threshold, windowMs: d.windowMs, blockMs: d.blockMs };
  }

  #fingerprintSettings() {
    const d = this.#config;
    return { threshold: d.fingerprint.threshold, windowMs: d.windowMs, blockMs: d.blockMs };
  }

  apply(config: Config): void {
    this.#config = config.detector;
    this.#sources.configure(this.#sourceSettings());
    this.#fingerprints.configure(this.#fingerprintSettings());
    if (config.detector.webhook !== this.#webhookUrl) {
      this.#webhookUrl = config.detector.webhook;
      this.#webhook = this.#webhookUrl ? new AlertWebhook(this.#webhookUrl, this.log) : null;
    }
  }

  /**
   * Hands every block decided here to `share` (with state.backend: redis,
   * the cluster's other instances): sources, and JA4s when
   * detector.fingerprint.block is on. Failures are counted here only.
   */
  shareBlocks(share: (block: DetectorBlock) => void): void {
    this.#share = share;
  }

  /**
   * Enforces a block decided elsewhere until it ends; false when it changes
   * nothing (blocked that long already, expired, or an address of
   * detector.allow, which is never blocked).
   */
  impose(block: DetectorBlock): boolean {
    if (block.kind === 'ja4') return this.#fingerprints.impose(block.key, block.until);
    return !this.#allowed(block.key) && this.#sources.impose(block.key, block.until);
  }

  /** Stops counting failures (the instance is closing). */
  stop(): void {
    this.#unsubscribe();
  }

  #allowed(address: string): boolean {
    return this.#config.allow.check(address, isIPv6(address) ? 'ipv6' : 'ipv4');
  }

  /** Whether connections from `address` are closed at accept right now. */
  blocked(address: string): boolean {
    return this.#sources.isBlocked(address);
  }

  /** Whether a ClientHello with this JA4 from this address is refused before TLS (only with detector.fingerprint.block). */
  fingerprintBlocked(ja4: string, address: string): boolean {
    return this.#config.fingerprint.block && this.#fingerprints.isBlocked(ja4) && !this.#allowed(address);
  }

  #failed(e: ConnectionEvent): void {
    const address = e.remoteAddress;
    if (!address || this.#allowed(address)) return;
    const reason = e.reason as Reason;
    const source = this.#sources.failure(address, reason);
    if (source) this.#sourceBlocked(source);
    const fingerprint = e.ja4 ? this.#fingerprints.failure(e.ja4, reason) : null;
    if (fingerprint) this.#fingerprintFlagged(fingerprint, address);
  }

  #sourceBlocked(block: BlockDecision): void {
    this.metrics.sourcesBlocked.inc();
    const alert = { event: 'source_blocked', address: block.key, failures: block.failures, lastReason: block.lastReason, until: new Date(block.until).toISOString() };
    this.bus.publish('warn', alert, `blocked ${block.key} until ${alert.until}: ${block.failures} failed handshakes or client certificates within detector.window (last: ${block.lastReason})`);
    this.#webhook?.send({ ...alert, time: new Date().toISOString() });
    this.#share?.({ kind: 'source', key: block.key, until: block.until });
  }

  #fingerprintFlagged(flag: BlockDecision, lastAddress: string): void {
    const blocked = this.#config.fingerprint.block;
    this.metrics.fingerprintsFlagged.inc({ blocked: String(blocked) });
    const alert = { event: 'fingerprint_flagged', ja4: flag.key, failures: flag.failures, lastReason: flag.lastReason, lastAddress, blocked, until: new Date(flag.until).toISOString() };
    const what = blocked ? `blocked until ${alert.until} (detector.fingerprint.block)` : 'not blocked (detector.fingerprint.block is off); the sources are counted on their own';
    if (blocked) this.#share?.({ kind: 'ja4', key: flag.key, until: flag.until });
    this.bus.publish('warn', alert, `JA4 ${flag.key} failed ${flag.failures} handshakes or client certificates within detector.window (last: ${flag.lastReason} from ${lastAddress}): ${what}`);
    this.#webhook?.send({ ...alert, time: new Date().toISOString() });
  }
}
