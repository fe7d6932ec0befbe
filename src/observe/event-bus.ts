import type { Logger } from './logger.js';

/** An event as subscribers get it: the log line's fields plus its time. */
export interface TelemetryEvent {
  readonly event: string;
  /** ISO time of publication. */
  readonly time: string;
  readonly [field: string]: unknown;
}

export type EventLevel = 'debug' | 'info' | 'warn' | 'error';
export type EventListener = (event: TelemetryEvent) => void;

/** Events kept for subscribers that arrive late (a dashboard that opens): the most recent ones, oldest dropped first. */
const defaultCapacity = 1000;

/**
 * The in-process event bus: every connection event (and the detector's
 * alerts) goes to the diagnostic log at its level and to each subscriber,
 * synchronously and in order. The last events are kept in a ring buffer,
 * whatever the log level. A throwing subscriber is reported once and never
 * reaches the connection that caused the event.
 */
export class EventBus {
  readonly #log: Logger;
  readonly #ring: (TelemetryEvent | undefined)[];
  #next = 0;
  readonly #listeners = new Set<EventListener>();
  readonly #failed = new WeakSet<EventListener>();

  constructor(log: Logger, capacity = defaultCapacity) {
    this.#log = log;
    this.#ring = new Array<TelemetryEvent | undefined>(capacity);
  }

  publish(level: EventLevel, fields: { readonly event: string; readonly [field: string]: unknown }, message: string): void {
    this.#log[level](fields, message);
    const event: TelemetryEvent = { ...fields, time: new Date().toISOString() };
    this.#ring[this.#next] = event;
    this.#next = (this.#next + 1) % this.#ring.length;
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch (err) {
        if (this.#failed.has(listener)) continue;
        this.#failed.add(listener);
        this.#log.error({ event: 'event_subscriber_failed', error: (err as Error).message, failedOn: event.event }, 'an event subscriber threw; it keeps receiving events, and this is reported once');
      }
    }
  }

  /** Calls `listener` for every event from now on; returns the unsubscribe function. */
  subscribe(listener: EventListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** The kept events, oldest first. */
  recent(): TelemetryEvent[] {
    const n = this.#ring.length;
    const out: TelemetryEvent[] = [];
    for (let i = 0; i < n; i++) {
      const e = this.#ring[(this.#next + i) % n];
      if (e) out.push(e);
    }
    return out;
  }
}
