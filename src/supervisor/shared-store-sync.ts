import { randomUUID } from 'node:crypto';
import { PortcullisError } from '../errors.js';
import type { Logger } from '../observe/index.js';
import { resyncOnLink, StateWriteError, type RedisLink } from '../state/index.js';
import type { ReloadResult } from './reloader.js';

/** How often every instance re-reads a shared store in full, besides at every change announced and every recovery: the bound on a missed announcement. */
const resyncEveryMs = 10_000;

/** A store as the cluster's Redis holds it, read at one instant. */
export interface SharedCopy<T> {
  readonly entries: readonly T[];
  /** Whether `entry`, a copy this instance holds that Redis lacks, is an old version of something removed since (and so is not written back). */
  stale(entry: T): boolean;
  /** Fields that hold nothing usable: logged; this instance keeps its own copy of what they name. */
  readonly invalid: readonly { readonly key: string; readonly problem: string }[];
}

/**
 * A store every instance of a cluster shares (the deny list, the API keys):
 * where Redis keeps it and how two copies of an entry meet.
 * `shared-stores.ts` has the two.
 */
export interface SharedStore<T> {
  /** "deny list", "API keys": for messages. */
  readonly what: string;
  /** The metric label: "deny_list", "api_keys". */
  readonly label: string;
  /** The pub/sub channel (inside the cluster's namespace) that announces a change. */
  readonly channel: string;
  /** The local copy under dataDir, which the CLI's read commands show. */
  path(): string;
  key(entry: T): string;
  /** For logs: "deny sha256:AB:…", "API key 3fa1c2d4e5f6". */
  describe(entry: T): string;
  read(link: RedisLink): Promise<SharedCopy<T>>;
  /** Writes entries Redis must hold from now on; `explicit`: made by a command here (never dropped as stale). */
  write(link: RedisLink, writes: readonly { readonly entry: T; readonly explicit: boolean }[]): Promise<void>;
  /** The entry in force when Redis holds `remote` and this instance `local` under one key. */
  join(remote: T, local: T): T;
  /** Removes an entry from the cluster (only stores that have removals). */
  remove?(link: RedisLink, entry: T): Promise<void>;
  /** The local copy; throws (PCL_DENY_LIST_INVALID, PCL_API_KEYS_INVALID) when it cannot be read. */
  readLocal(): T[];
  /** Replaces the local copy; throws StateWriteError. */
  writeLocal(entries: readonly T[]): void;
}

/** Puts a complete store in force on every serving process of this instance; resolves with what it did. */
export type ApplyStore<T> = (entries: readonly T[]) => Promise<string>;

/** One rendering of a store's content, whatever the order of its entries or their fields. */
function canonical<T>(entries: Iterable<T>): string {
  return JSON.stringify([...entries].map((e) => JSON.stringify(e, Object.keys(e as object).sort())).sort());
}

/**
 * Keeps one shared store of a cluster (`state.backend: redis`) in step
 * between this instance and Redis, in the control plane:
 * - the store in force here (`local`) is the cluster's copy, joined with
 *   the changes made here that Redis does not hold yet (`queued`); it is
 *   also written to the local file under dataDir;
 * - a change made here (a command, over the control socket) is put in force
 *   at once, then written to Redis and announced on the store's channel;
 *   when Redis is unreachable it stays queued and is written at recovery;
 * - every announcement from another instance, every recovery of the link
 *   (and once more shortly after it) and every `resyncEveryMs` re-read
 *   Redis in full; each re-read first writes back what this instance holds
 *   and Redis lacks (a restarted Redis that lost its data gets it back from
 *   every instance), except copies of entries removed since;
 * - a removal (which loosens) is made only through Redis: refused
 *   (PCL_STATE_UNAVAILABLE) while it is unreachable.
 * Operations run one at a time; nothing here rejects: failures are answered
 * and logged.
 */
export class SharedStoreSync<T> {
  #local: Map<string, T>;
  readonly #queued = new Map<string, T>();
  #inForce: string;
  #onDisk: string;
  #fileFailed = false;
  /** Changes were queued during an outage: their writing is logged. */
  #backlog = false;
  #queue: Promise<unknown> = Promise.resolve();
  #resyncWaiting: Promise<void> | null = null;
  /** Tells this instance's own announcements from the others'. */
  readonly #origin = randomUUID();
  readonly #invalidSeen = new Set<string>();
  #stops: (() => void)[] = [];

  constructor(
    private readonly store: SharedStore<T>,
    private readonly link: RedisLink,
    initial: readonly T[],
    private readonly apply: ApplyStore<T>,
    private readonly log: Logger,
  ) {
    this.#local = new Map(initial.map((e) => [store.key(e), e]));
    this.#inForce = this.#onDisk = canonical(initial);
  }

  /** Changes made here that Redis does not hold yet. */
  get queued(): number {
    return this.#queued.size;
  }

  /** Subscribes, follows the link, re-reads every `resyncEveryMs`, and syncs once (on failure the local copy stays in force). */
  async start(): Promise<void> {
    this.#stops.push(resyncOnLink(this.link, () => void this.resync(), resyncEveryMs));
    try {
      this.#stops.push(await this.link.subscribe(this.store.channel, (origin) => void (origin !== this.#origin && this.resync())));
    } catch (err) {
      this.log.warn({ event: 'cluster_sync_failed', store: this.store.what, error: (err as Error).message }, `${this.store.what}: cannot subscribe to the cluster's changes (${(err as Error).message}); re-reading every ${resyncEveryMs / 1000} s`);
    }
    await this.resync();
  }

  /** Re-reads Redis in full and puts the result in force; one waiting re-read serves every caller that asks meanwhile. */
  resync(): Promise<void> {
    this.#resyncWaiting ??= this.#serial(async () => {
      this.#resyncWaiting = null;
      const reached = await this.#tryExchange();
      if (reached || this.#fileFailed) await this.#settle(false).catch((err: Error) => this.log.error({ event: 'cluster_sync_failed', store: this.store.what, error: err.message }, `${this.store.what} from the cluster not applied: ${err.message}`));
    });
    return this.#resyncWaiting;
  }

  /**
   * A change made here (a command): `edits` builds the entries to add or
   * tighten from the ones in force (by key). They are put in force at once,
   * with whatever the local file holds that this instance lacks (a command
   * run while no instance ran), then written to Redis; queued when it is
   * unreachable. The answer's `unsaved` counts the changes held in memory
   * only: neither in Redis nor in the local file.
   */
  change(edits: (current: (key: string) => T | undefined) => readonly T[]): Promise<ReloadResult> {
    return this.#serial(async () => {
      const made = edits((key) => this.#local.get(key));
      for (const e of made) this.#queued.set(this.store.key(e), this.#joined(e));
      for (const e of [...made, ...this.#fileExtras()]) this.#local.set(this.store.key(e), this.#joined(e));
      // in force here before Redis is asked: a denial never waits for the network
      let effect: string | null;
      try {
        effect = await this.#settle(false);
      } catch (err) {
        return this.#failed(err as Error);
      }
      const reached = await this.#tryExchange();
      if (!reached && made.length > 0) this.#queuedLog(made);
      return this.#answer(reached, effect);
    });
  }

  /** Removes an entry from the cluster, through Redis only; refused (PCL_STATE_UNAVAILABLE) when it cannot be reached. */
  remove(entry: T): Promise<ReloadResult> {
    return this.#serial(async () => {
      const key = this.store.key(entry);
      try {
        if (!this.link.up) throw new Error('the connection is down');
        await this.#exchange();
        const current = this.#local.get(key);
        if (current !== undefined) {
          await (this.store.remove as NonNullable<SharedStore<T>['remove']>)(this.link, current);
          await this.link.publish(this.store.channel, this.#origin);
          this.#local.delete(key);
        }
      } catch (err) {
        const message = `${this.store.describe(entry)} NOT removed: the cluster's Redis at ${this.link.settings.display} cannot be reached (${(err as Error).message}). A removal loosens the ${this.store.what} of every instance, so it is made through Redis only; it stays in force everywhere. Run the command again once Redis is back.`;
        this.log.warn({ event: 'cluster_change_refused', store: this.store.what, change: `remove ${this.store.describe(entry)}`, error: (err as Error).message }, message);
        await this.#settle(true).catch(() => {});
        return { ok: false, code: 'PCL_STATE_UNAVAILABLE', message };
      }
      return this.#answer(true);
    });
  }

  /** Before every control request: a local copy that could not be written is tried again. */
  retry(): Promise<void> {
    return this.#serial(async () => {
      if (this.#fileFailed) this.#writeLocal([...this.#local.values()]);
    });
  }

  /** Stops following the cluster; changes still queued are in the local file and written to Redis at the next start. */
  stop(): Promise<void> {
    return this.#serial(async () => {
      for (const stop of this.#stops) stop();
      this.#stops = [];
      if (this.#queued.size === 0) return;
      const what = [...this.#queued.values()].map((e) => this.store.describe(e));
      this.log.warn({ event: 'cluster_changes_pending', store: this.store.what, changes: what }, `${this.store.what}: ${what.join(', ')} not written to the cluster's Redis before this stop; ${this.#fileFailed ? 'NOT in the local copy either: lost' : `kept in ${this.store.path()}, written at the next start of this instance`}`);
    });
  }

  #serial<R>(fn: () => Promise<R>): Promise<R> {
    const run = this.#queue.then(fn);
    this.#queue = run.catch(() => {});
    return run;
  }

  #joined(entry: T): T {
    const current = this.#local.get(this.store.key(entry));
    return current === undefined ? entry : this.store.join(current, entry);
  }

  /** What the local file holds that the store in force lacks (written while no instance ran); nothing when it cannot be read. */
  #fileExtras(): T[] {
    let entries: T[];
    try {
      entries = this.store.readLocal();
    } catch (err) {
      this.log.error({ event: 'cluster_sync_failed', store: this.store.path(), error: (err as Error).message }, `${this.store.what}: the local copy cannot be read (${(err as Error).message}); it is rewritten from the cluster's`);
      return [];
    }
    return entries.filter((e) => {
      const current = this.#local.get(this.store.key(e));
      return current === undefined || canonical([this.store.join(current, e)]) !== canonical([current]);
    });
  }

  /** `#exchange`, false when Redis could not be reached (not tried while the link is down: changes stay queued). */
  async #tryExchange(): Promise<boolean> {
    if (!this.link.up) return false;
    try {
      await this.#exchange();
      return true;
    } catch (err) {
      // during an outage the link has said so; anything else (an ACL that forbids these keys) is said here
      if (this.link.up) this.log.warn({ event: 'cluster_sync_failed', store: this.store.what, error: (err as Error).message }, `${this.store.what}: exchange with the cluster's Redis failed (${(err as Error).message}); serving on the local copy, retried within ${resyncEveryMs / 1000} s`);
      return false;
    }
  }

  /**
   * Writes what Redis lacks (the queued changes; entries held here and not
   * removed there since), reads the cluster's copy back and makes it the
   * store in force here. Throws when Redis does not answer.
   */
  async #exchange(): Promise<void> {
    const { store, link } = this;
    let copy = await store.read(link);
    const writes = this.#writesFor(copy);
    if (writes.length > 0) {
      await store.write(link, writes);
      await link.publish(store.channel, this.#origin);
      copy = await store.read(link);
    }
    this.#logInvalid(copy);
    const unreadable = new Set(copy.invalid.map((i) => i.key));
    const local = new Map(copy.entries.map((e) => [store.key(e), e]));
    // a field Redis holds but nobody can read: this instance keeps its copy (failing closed)
    for (const [key, e] of this.#local) if (unreadable.has(key) && !local.has(key)) local.set(key, e);
    this.#local = local;
    const written = [...this.#queued.values()].map((e) => store.describe(e));
    this.#queued.clear();
    if (this.#backlog && written.length > 0) this.log.info({ event: 'cluster_changes_written', store: store.what, changes: written }, `${store.what}: ${written.join(', ')} written to the cluster's Redis`);
    this.#backlog = false;
  }

  #writesFor(copy: SharedCopy<T>): { entry: T; explicit: boolean }[] {
    const there = new Map(copy.entries.map((e) => [this.store.key(e), e]));
    const writes = [...this.#queued.values()].map((entry) => ({ entry, explicit: true }));
    for (const [key, e] of this.#local) {
      if (this.#queued.has(key)) continue;
      const remote = there.get(key);
      const lacking = remote === undefined ? !copy.stale(e) : canonical([this.store.join(remote, e)]) !== canonical([remote]);
      if (lacking) writes.push({ entry: e, explicit: false });
    }
    return writes;
  }

  /** Puts the store in force when it changed, and writes the local copy (`always`: after a command, which may have written it itself). */
  async #settle(always: boolean): Promise<string | null> {
    const entries = [...this.#local.values()];
    const now = canonical(entries);
    let effect: string | null = null;
    if (now !== this.#inForce) {
      effect = await this.apply(entries);
      this.#inForce = now;
    }
    if (always || now !== this.#onDisk || this.#fileFailed) this.#writeLocal(entries);
    return effect;
  }

  #writeLocal(entries: readonly T[]): void {
    try {
      this.store.writeLocal(entries);
      this.#onDisk = canonical(entries);
      this.#fileFailed = false;
    } catch (err) {
      if (!this.#fileFailed) {
        this.log.warn(
          { event: 'state_not_persisted', store: this.store.path(), errno: err instanceof StateWriteError ? err.errno : null, error: (err as Error).message },
          `${this.store.what}: the local copy ${this.store.path()} cannot be written (${(err as Error).message}); what is in force here stays, retried at every change and control request`,
        );
      }
      this.#fileFailed = true;
    }
  }

  #failed(err: Error): ReloadResult {
    return { ok: false, code: err instanceof PortcullisError ? err.code : 'PCL_WORKER_FAILED', message: `${this.store.what} ${err.message}` };
  }

  /** Puts what the exchange brought in force, writes the local copy, and says what happened (`earlier`: what applying the change itself did). */
  async #answer(reached: boolean, earlier: string | null = null): Promise<ReloadResult> {
    let effect: string | null;
    try {
      effect = earlier ?? (await this.#settle(true));
      if (earlier !== null) await this.#settle(true);
    } catch (err) {
      return this.#failed(err as Error);
    }
    const n = this.#local.size;
    const entries = `${n} entr${n === 1 ? 'y' : 'ies'}`;
    const head = effect === null ? `${this.store.what} unchanged (${entries})` : `${this.store.what} applied (${entries}): ${effect}`;
    if (reached) return { ok: true, message: `${head}; in the cluster's Redis, every instance applies it`, unsaved: 0 };
    const queued = this.#queued.size;
    return {
      ok: true,
      message: `${head}; the cluster's Redis at ${this.link.settings.display} is unreachable: ${queued} change(s) queued, written to it once it is back${this.#fileFailed ? ` (and not saved to ${this.store.path()})` : ''}`,
      unsaved: this.#fileFailed ? queued : 0,
    };
  }

  #queuedLog(made: readonly T[]): void {
    this.#backlog = true;
    const what = made.map((e) => this.store.describe(e));
    this.log.warn({ event: 'cluster_change_queued', store: this.store.what, changes: what }, `${this.store.what}: ${what.join(', ')} in force on this instance; the cluster's Redis is unreachable: queued, written to it once it is back`);
  }

  #logInvalid(copy: SharedCopy<T>): void {
    for (const { key, problem } of copy.invalid) {
      if (this.#invalidSeen.has(problem)) continue;
      this.#invalidSeen.add(problem);
      this.log.error({ event: 'cluster_state_invalid', store: this.store.what, key, problem }, `${this.store.what}: the cluster's Redis holds something unusable (${problem}); this instance keeps its own copy of ${key}; fix or delete that field`);
    }
  }
}
