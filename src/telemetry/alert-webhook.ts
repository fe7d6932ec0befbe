import { request } from 'undici';
import type { Logger } from '../observe/index.js';

/** Alerts waiting to be sent at most; beyond it new ones are dropped (and counted in the log). */
const maxQueued = 100;
const attempts = 4;
const timeoutMs = 5_000;

/**
 * Sends alerts as JSON POSTs to a webhook, one at a time, each retried with
 * backoff (1, 2, 4 s) before it is given up. The queue is bounded, so a dead
 * webhook never grows memory or slows the proxy.
 */
export class AlertWebhook {
  readonly #queue: unknown[] = [];
  #sending = false;
  #dropped = 0;

  constructor(
    private readonly url: string,
    private readonly log: Logger,
  ) {}

  send(alert: unknown): void {
    if (this.#queue.length >= maxQueued) {
      this.#dropped++;
      return;
    }
    this.#queue.push(alert);
    if (!this.#sending) void this.#drain();
  }

  async #drain(): Promise<void> {
    this.#sending = true;
    while (this.#queue.length > 0) {
      const alert = this.#queue.shift();
      await this.#post(alert);
      if (this.#dropped > 0) {
        this.log.warn({ event: 'alert_webhook_dropped', dropped: this.#dropped }, `${this.#dropped} alert(s) dropped: the webhook queue was full`);
        this.#dropped = 0;
      }
    }
    this.#sending = false;
  }

  async #post(alert: unknown): Promise<void> {
    const body = JSON.stringify(alert);
    for (let attempt = 1; attempt <= attempts; attempt++) {
      try {
        const res = await request(this.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body, headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
        await res.body.dump();
        if (res.statusCode < 300) return;
        throw new Error(`HTTP ${res.statusCode}`);
      } catch (err) {
        if (attempt === attempts) {
          this.log.error({ event: 'alert_webhook_failed', url: this.url, error: (err as Error).message }, `the alert webhook failed ${attempts} times; this alert is given up`);
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, 1000 * 2 ** (attempt - 1)).unref());
      }
    }
  }
}
