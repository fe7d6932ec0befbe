import { Gauge, type Registry } from 'prom-client';

/**
 * The state backend as one process sees it, with `state.backend: redis`
 * (nothing is registered with `memory`): whether its connection to Redis is
 * up, and how many changes it made during an outage wait to be written
 * there. Read at each scrape from the callbacks given, so nothing is
 * counted on a hot path. A process registers these once per registry; the
 * control plane and every serving process each have theirs, and a scrape
 * of the instance aggregates them (up by minimum: one process that lost
 * Redis makes the instance's 0; queued changes by sum).
 */
export class StateBackendMetrics {
  #up: () => boolean = () => true;
  readonly #queues = new Map<string, () => number>();

  constructor(registry: Registry) {
    const up: Gauge = new Gauge({
      name: 'portcullis_state_backend_up',
      help: 'Whether the connection to the redis state backend is up (1) or lost (0: serving on the local copy, changes queued)',
      registers: [registry],
      aggregator: 'min',
      collect: () => up.set(this.#up() ? 1 : 0),
    });
    const queued: Gauge<'store'> = new Gauge<'store'>({
      name: 'portcullis_state_changes_queued',
      help: 'Changes made here that the redis state backend does not hold yet (made during an outage, written once it is back), by store (deny_list, api_keys, blocks)',
      labelNames: ['store'],
      registers: [registry],
      aggregator: 'sum',
      collect: () => {
        for (const [store, count] of this.#queues) queued.set({ store }, count());
      },
    });
  }

  /** Where the link's state is read from. */
  watchLink(up: () => boolean): void {
    this.#up = up;
  }

  /** Where a store's queued changes are counted ("deny_list", "api_keys", "blocks": a bounded vocabulary). */
  watchQueue(store: string, count: () => number): void {
    this.#queues.set(store, count);
  }
}
