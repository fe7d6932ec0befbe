import type { Config } from '../config/index.js';
import type { Reason } from '../errors.js';
import { AlertWebhook } from './alert-webhook.js';
import { Detector, type DetectorSettings } from './detector.js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';

/** Failures that are not the source's doing, and so never count against it. */
const notCounted: ReadonlySet<Reason> = new Set<Reason>(['blocked', 'certificate_pending', 'policy_changed']);

const settingsOf = (config: Config): DetectorSettings => ({ threshold: config.detector.threshold, windowMs: config.detector.windowMs, blockMs: config.detector.blockMs, allow: config.detector.allow });

/**
 * The detector wired to the instance: it hears every refused connection and
 * client-certificate failure through the metrics, blocks a source that
 * crosses the threshold (logged as `source_blocked`, counted, and posted to
 * the webhook when one is configured), and answers the edge's question at
 * accept. State is per process.
 */
export class ProbeGuard {
  readonly #detector: Detector;
  #webhook: AlertWebhook | null = null;
  #webhookUrl: string | null = null;

  constructor(
    config: Config,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {
    this.#detector = new Detector(settingsOf(config));
    this.apply(config);
    metrics.onFailure((address, reason) => this.#failed(address, reason));
    metrics.watchBlocked(() => this.#detector.blocked().length);
  }

  apply(config: Config): void {
    this.#detector.configure(settingsOf(config));
    if (config.detector.webhook !== this.#webhookUrl) {
      this.#webhookUrl = config.detector.webhook;
      this.#webhook = this.#webhookUrl ? new AlertWebhook(this.#webhookUrl, this.log) : null;
    }
  }

  blocked(address: string): boolean {
    return this.#detector.isBlocked(address);
  }

  #failed(address: string, reason: Reason): void {
    if (notCounted.has(reason)) return;
    const block = this.#detector.failure(address, reason);
    if (!block) return;
    this.metrics.sourcesBlocked.inc();
    const alert = { event: 'source_blocked', address: block.address, failures: block.failures, lastReason: block.lastReason, until: new Date(block.until).toISOString() };
    this.log.warn(alert, `blocked ${block.address} until ${alert.until}: ${block.failures} failed handshakes or client certificates within detector.window (last: ${block.lastReason})`);
    this.#webhook?.send({ ...alert, time: new Date().toISOString() });
  }
}
