import type { Logger } from '../observe/index.js';
import { heartbeatMs, recordTtlMs, removeInstanceRecord, writeInstanceRecord, type InstanceRecord, type RedisLink } from '../state/index.js';

/**
 * Keeps this instance in the cluster's fleet registry (state/fleet-records.ts):
 * writes its record at start, every heartbeatMs after, and at once when
 * `beat` is called (after a reload, so `status --fleet` shows it without
 * waiting); removes it on a clean stop. Without heartbeats (a crash, a
 * SIGKILL, a machine gone) Redis forgets the record recordTtlMs after the
 * last one.
 *
 * Failure: a heartbeat Redis does not take is not queued — the next one
 * writes the whole record again, and one is sent as soon as the link is
 * back. While heartbeats fail (logged once per outage, `fleet_heartbeat_failed`)
 * the record expires and other instances no longer list this one: that is
 * what the registry is for (this instance is cut off from the cluster's
 * state). Nothing here touches serving.
 */
export class FleetRegistry {
  #timer: NodeJS.Timeout | null = null;
  #inFlight: Promise<void> = Promise.resolve();
  #failing = false;
  #registered = false;
  #stopped = false;
  #stopWatching: () => void = () => {};

  constructor(
    private readonly link: RedisLink,
    private readonly describe: () => InstanceRecord,
    private readonly log: Logger,
  ) {}

  /** The first heartbeat, then one every heartbeatMs. Resolves once the first was written, or failed (logged). */
  async start(): Promise<void> {
    this.#timer = setInterval(() => void this.beat(), heartbeatMs);
    this.#timer.unref();
    this.#stopWatching = this.link.onLink((up) => {
      if (up) void this.beat();
    });
    await this.beat();
  }

  /** Writes the record now (one write at a time; a call during one waits for it, then writes again). Never rejects. */
  beat(): Promise<void> {
    const next = this.#inFlight.then(() => this.#write());
    this.#inFlight = next;
    return next;
  }

  async #write(): Promise<void> {
    if (this.#stopped) return;
    const record = this.describe();
    try {
      await writeInstanceRecord(this.link, record);
    } catch (err) {
      if (!this.#failing) this.log.warn({ event: 'fleet_heartbeat_failed', instance: record.id, error: (err as Error).message }, `could not refresh this instance in the fleet registry; other instances stop listing it ${recordTtlMs / 1000} s after the last heartbeat, until Redis takes one again`);
      this.#failing = true;
      return;
    }
    if (!this.#registered || this.#failing) {
      this.log.info({ event: 'fleet_registered', instance: record.id, cluster: record.cluster, heartbeatMs, ttlMs: recordTtlMs }, `registered in the fleet of cluster ${record.cluster} as ${record.id}`);
    }
    this.#registered = true;
    this.#failing = false;
  }

  /** Stops the heartbeats and removes the record (best effort: without Redis it expires by itself). Call before closing the link. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#stopWatching();
    if (this.#timer) clearInterval(this.#timer);
    await this.#inFlight;
    if (!this.#registered) return;
    const id = this.describe().id;
    try {
      await removeInstanceRecord(this.link, id);
    } catch (err) {
      this.log.warn({ event: 'fleet_deregister_failed', instance: id, error: (err as Error).message }, `could not remove this instance from the fleet registry; it expires there within ${recordTtlMs / 1000} s`);
    }
  }
}
