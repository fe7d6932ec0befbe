import { isIP } from 'node:net';
import { StateBackendMetrics, type EventBus, type Logger, type Metrics } from '../observe/index.js';
import { execAll, resyncOnLink, type RedisLink } from '../state/index.js';
import type { DetectorBlock, ProbeGuard } from './probe-guard.js';

/** How often every serving process re-reads the cluster's blocks in full, besides at every recovery: the bound on a missed announcement. */
const blocksResyncEveryMs = 10_000;
/** Blocks decided during an outage kept for writing at recovery; past it the earliest-ending go first (a flood of sources must not exhaust memory). */
const maxQueued = 10_000;
/** At most this many blocks are read per kind in one re-read (the detector tracks as many). */
const maxRead = 50_000;

const kinds = ['source', 'ja4'] as const;
const ja4Pattern = /^[A-Za-z0-9_]{1,100}$/;

/** The block, or null when its parts are not one (Redis may be shared with others: read strictly). */
function validBlock(kind: unknown, key: unknown, until: unknown): DetectorBlock | null {
  if (typeof key !== 'string' || typeof until !== 'number' || !Number.isFinite(until)) return null;
  if (kind === 'source' ? isIP(key) === 0 : kind !== 'ja4' || !ja4Pattern.test(key)) return null;
  return { kind: kind as DetectorBlock['kind'], key, until };
}

/** A block as the channel carries it, or null when the message is not one. */
function blockOf(message: string): DetectorBlock | null {
  try {
    const raw = JSON.parse(message) as unknown;
    if (typeof raw !== 'object' || raw === null) return null;
    const { kind, key, until } = raw as Record<string, unknown>;
    return validBlock(kind, key, until);
  } catch {
    return null;
  }
}

/**
 * The detector's blocks shared by every serving process of a cluster
 * (`state.backend: redis`), each process with its own link (a worker opens
 * its own). Failures are counted per process; a block decided anywhere is
 * enforced everywhere until it ends:
 *
 *   pcl:<cluster>:blocks:source  sorted set: address → until (ms since the epoch)
 *   pcl:<cluster>:blocks:ja4     sorted set: JA4 → until (shared only with detector.fingerprint.block)
 *   channel pcl:<cluster>:ch:blocks  {"kind","key","until"} for each new block
 *
 * A block is written with ZADD GT (the later end wins) and announced; every
 * process applies what it hears, and re-reads both sets in full at start,
 * at every recovery (and once more shortly after it) and every
 * `blocksResyncEveryMs` (pruning what has ended). During an outage, blocks decided here are enforced here and
 * queued, then written and announced at recovery. `until` is the deciding
 * machine's clock: instances are expected to keep time (NTP).
 */
export class SharedBlocks {
  readonly #queued = new Map<string, DetectorBlock>();
  #stops: (() => void)[] = [];
  #running: Promise<void> | null = null;

  constructor(
    private readonly link: RedisLink,
    private readonly guard: ProbeGuard,
    private readonly bus: EventBus,
    metrics: Metrics,
    private readonly log: Logger,
  ) {
    const gauges = new StateBackendMetrics(metrics.registry);
    gauges.watchLink(() => link.up);
    gauges.watchQueue('blocks', () => this.#queued.size);
    guard.shareBlocks((block) => void this.#decided(block));
  }

  /** Subscribes, follows the link, and reads the cluster's blocks once (on failure: at recovery). Never rejects. */
  async start(): Promise<void> {
    this.#stops.push(resyncOnLink(this.link, () => void this.resync(), blocksResyncEveryMs));
    try {
      this.#stops.push(await this.link.subscribe('blocks', (message) => this.#heard(message)));
    } catch (err) {
      this.log.warn({ event: 'cluster_sync_failed', store: 'blocks', error: (err as Error).message }, `detector blocks: cannot subscribe to the cluster's blocks (${(err as Error).message}); re-reading every ${blocksResyncEveryMs / 1000} s`);
    }
    await this.resync();
  }

  /** Nothing here follows the config: the blocks themselves follow detector.* in the ProbeGuard. */
  apply(): void {}

  stop(): void {
    for (const stop of this.#stops) stop();
    this.#stops = [];
  }

  /** Writes the queued blocks, then reads every block in force in the cluster and enforces it here; one at a time. */
  resync(): Promise<void> {
    this.#running ??= this.#exchange().finally(() => (this.#running = null));
    return this.#running;
  }

  async #decided(block: DetectorBlock): Promise<void> {
    if (this.link.up) {
      try {
        await this.#write([block]);
        return;
      } catch {
        // the link reports the outage; the block waits for it to end
      }
    }
    this.#queue(block);
  }

  #queue(block: DetectorBlock): void {
    const id = `${block.kind}:${block.key}`;
    const queued = this.#queued.get(id);
    if (queued && queued.until >= block.until) return;
    if (this.#queued.size === 0) this.log.warn({ event: 'cluster_change_queued', store: 'blocks' }, "detector blocks decided here are enforced here; the cluster's Redis is unreachable: queued, written to it once it is back");
    this.#queued.set(id, block);
    if (this.#queued.size > maxQueued) {
      const first = [...this.#queued].sort(([, a], [, b]) => a.until - b.until)[0] as [string, DetectorBlock];
      this.#queued.delete(first[0]);
    }
  }

  async #write(blocks: readonly DetectorBlock[]): Promise<void> {
    const multi = this.link.redis.multi();
    for (const b of blocks) multi.zadd(this.link.key('blocks', b.kind), 'GT', b.until, b.key);
    await execAll(multi);
    await Promise.all(blocks.map((b) => this.link.publish('blocks', JSON.stringify(b))));
  }

  #heard(message: string): void {
    const block = blockOf(message);
    if (block === null) {
      this.log.warn({ event: 'cluster_state_invalid', store: 'blocks', problem: 'not a block message' }, "detector blocks: a message on the cluster's blocks channel is not a block; ignored");
      return;
    }
    this.#enforce(block);
  }

  #enforce(block: DetectorBlock): void {
    if (!this.guard.impose(block)) return;
    const until = new Date(block.until).toISOString();
    const fields = block.kind === 'source' ? { address: block.key } : { ja4: block.key };
    this.bus.publish('info', { event: 'cluster_block_applied', kind: block.kind, ...fields, until }, `blocked ${block.kind === 'source' ? block.key : `JA4 ${block.key}`} until ${until}: decided by another instance of the cluster`);
  }

  async #exchange(): Promise<void> {
    if (!this.link.up) return;
    const now = Date.now();
    const queued = [...this.#queued.values()];
    const live = queued.filter((b) => b.until > now);
    try {
      if (live.length > 0) await this.#write(live);
      // what was queued meanwhile stays for the next exchange
      for (const b of queued) if (this.#queued.get(`${b.kind}:${b.key}`) === b) this.#queued.delete(`${b.kind}:${b.key}`);
      if (live.length > 0) this.log.info({ event: 'cluster_changes_written', store: 'blocks', blocks: live.length }, `detector blocks: ${live.length} decided during the outage written to the cluster's Redis`);
      await this.#readAll(now);
    } catch (err) {
      if (this.link.up) this.log.warn({ event: 'cluster_sync_failed', store: 'blocks', error: (err as Error).message }, `detector blocks: exchange with the cluster's Redis failed (${(err as Error).message}); retried within ${blocksResyncEveryMs / 1000} s`);
    }
  }

  /** Prunes the blocks that ended and enforces every other one. */
  async #readAll(now: number): Promise<void> {
    const multi = this.link.redis.multi();
    for (const kind of kinds) multi.zremrangebyscore(this.link.key('blocks', kind), '-inf', now).zrangebyscore(this.link.key('blocks', kind), `(${now}`, '+inf', 'WITHSCORES', 'LIMIT', 0, maxRead);
    const results = await execAll(multi);
    kinds.forEach((kind, i) => {
      const flat = results[i * 2 + 1] as string[];
      for (let j = 0; j + 1 < flat.length; j += 2) {
        const block = validBlock(kind, flat[j], Number(flat[j + 1]));
        if (block) this.#enforce(block);
      }
    });
  }
}
