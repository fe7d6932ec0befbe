import { readApiKeys, writeApiKeys, type ApiKeyRecord } from '../access/index.js';
import { PortcullisError, type ErrorCode } from '../errors.js';
import { apiKeysFile, denyListFile, StateWriteError } from '../state/index.js';
import { readDenyList, writeDenyList } from '../trust/index.js';
import type { DenyEntry } from '../trust/index.js';
import type { Logger } from '../observe/index.js';
import type { ReloadResult } from './reloader.js';
import { denyChanges, keyRevocations, type ChangeOps, type DenyChange, type KeyRevocation } from './store-changes.js';

/** How often changes held in memory only are tried again (besides at every control request). */
export const unsavedRetryMs = 30_000;

/** A store under dataDir that a CLI command rewrites and the running instance then re-reads: the deny list, the API keys. */
export interface StoreOnDisk<T, C> {
  /** "deny list", "API keys": for messages. */
  readonly what: string;
  /** The event logged when the store cannot be read. */
  readonly refusedEvent: string;
  readonly invalidCode: ErrorCode;
  readonly path: string;
  read(): T[];
  /** Replaces the file atomically; throws PCL_STATE_WRITE_FAILED when it cannot. */
  write(entries: readonly T[]): void;
  /** How the changes a command could not save are laid over the file. */
  readonly changes: ChangeOps<T, C>;
}

interface Unsaved<C> {
  readonly change: C;
  /** Written by this instance; kept until a later read of the file confirms it (another writer may have replaced the file since). */
  saved: boolean;
}

/**
 * Keeps the running instance's copy of one store in step with its file, and
 * holds the tightening changes a command could not save (full disk,
 * read-only filesystem) as an overlay:
 * - every read of the file is applied with the overlay on top, so a later
 *   command that rewrites the file without them cannot loosen anything;
 * - while the overlay holds a change not saved yet, the instance saves the
 *   file itself (file + overlay: never less than either), every
 *   `unsavedRetryMs` and at every control request (`retry`), logging
 *   `state_not_persisted` for each attempt that fails;
 * - a change leaves the overlay once a read of the file holds it.
 * Operations run one at a time. Nothing here rejects: failures are answered
 * and logged.
 */
export class StoreSync<T, C> {
  readonly #store: () => StoreOnDisk<T, C>;
  readonly #apply: (entries: readonly T[]) => Promise<string>;
  readonly #log: Logger;
  readonly #unsaved = new Map<string, Unsaved<C>>();
  /** The file as last read, for a change that arrives while the file cannot be read. */
  #lastRead: readonly T[];
  #queue: Promise<unknown> = Promise.resolve();
  #timer: NodeJS.Timeout | null = null;

  /**
   * `initial`: the file as read at start. `apply` puts a complete store in
   * force (every worker confirming) and resolves with what it did, or
   * rejects naming where it could not.
   */
  constructor(store: () => StoreOnDisk<T, C>, initial: readonly T[], apply: (entries: readonly T[]) => Promise<string>, log: Logger) {
    this.#store = store;
    this.#lastRead = initial;
    this.#apply = apply;
    this.#log = log;
  }

  /**
   * Re-reads the file a command just wrote and applies it with the overlay
   * on top; with `change` (a tightening the command could not save), adds it
   * to the overlay first and tries to save it at once. A file that cannot be
   * read leaves the store in force untouched — except that a new change is
   * still applied on top of it. The answer's `unsaved` counts the changes
   * held in memory only.
   */
  sync(change: C | null): Promise<ReloadResult> {
    return this.#serial(() => this.#sync(change));
  }

  /** Tries to save the changes held in memory only; a no-op when there are none. */
  retry(): Promise<void> {
    return this.#serial(() => this.#retry());
  }

  /** At stop: a last attempt; changes that still cannot be saved are logged as lost. */
  stop(): Promise<void> {
    return this.#serial(async () => {
      await this.#retry();
      this.#schedule(false);
      const lost = this.#pending(false);
      if (lost.length === 0) return;
      const store = this.#store();
      const what = lost.map((u) => store.changes.describe(u.change));
      this.#log.error({ event: 'state_lost', store: store.path, changes: what }, `${store.what}: ${what.join(', ')} never saved to ${store.path}; lost at this stop (run the commands again)`);
    });
  }

  #serial<R>(fn: () => Promise<R>): Promise<R> {
    const run = this.#queue.then(fn);
    this.#queue = run.catch(() => {});
    return run;
  }

  async #sync(change: C | null): Promise<ReloadResult> {
    const store = this.#store();
    const isNew = change !== null && !this.#unsaved.has(store.changes.key(change));
    if (change !== null && isNew) this.#unsaved.set(store.changes.key(change), { change, saved: false });
    let entries: readonly T[];
    let unreadable: PortcullisError | null = null;
    try {
      entries = this.#read(store);
    } catch (err) {
      const code = err instanceof PortcullisError ? err.code : store.invalidCode;
      this.#log.error({ event: store.refusedEvent, code, error: (err as Error).message }, `${store.what} not applied; the previous one stays in force${change === null ? '' : ', with the new change on top'}`);
      if (change === null) return { ok: false, code, message: (err as Error).message };
      unreadable = err instanceof PortcullisError ? err : new PortcullisError(store.invalidCode, (err as Error).message, { cause: err });
      entries = this.#lastRead;
    }
    const merged = this.#merged(store, entries);
    let effect: string;
    try {
      effect = await this.#apply(merged);
    } catch (err) {
      this.#schedule(this.#unsaved.size > 0);
      const code = err instanceof PortcullisError ? err.code : 'PCL_WORKER_FAILED';
      return { ok: false, code, message: `${store.what} ${(err as Error).message}` };
    }
    if (isNew && !unreadable) this.#save(store, entries);
    this.#schedule(this.#unsaved.size > 0);
    const applied = `${store.what} applied (${merged.length} entr${merged.length === 1 ? 'y' : 'ies'}): ${effect}`;
    if (unreadable) return { ok: false, code: unreadable.code, message: `${applied}, on top of the list in force: ${store.path} cannot be read (${unreadable.message})` };
    const unsaved = this.#pending(false).length;
    return { ok: true, message: unsaved > 0 ? `${applied}; ${unsaved} change(s) held in memory only, not saved to ${store.path} yet` : applied, unsaved };
  }

  async #retry(): Promise<void> {
    if (this.#unsaved.size === 0) return;
    const store = this.#store();
    let entries: T[];
    try {
      entries = this.#read(store);
    } catch (err) {
      this.#notSaved(store, err as Error);
      return;
    }
    this.#save(store, entries);
    this.#schedule(this.#unsaved.size > 0);
  }

  /** Reads the file and drops from the overlay what it holds; a change this instance saved that the file lost is unsaved again. */
  #read(store: StoreOnDisk<T, C>): T[] {
    const entries = store.read();
    this.#lastRead = entries;
    for (const [key, u] of this.#unsaved) {
      if (store.changes.carries(entries, u.change)) this.#unsaved.delete(key);
      else u.saved = false;
    }
    return entries;
  }

  #merged(store: StoreOnDisk<T, C>, entries: readonly T[]): T[] {
    let merged = [...entries];
    for (const u of this.#unsaved.values()) merged = store.changes.apply(merged, u.change);
    return merged;
  }

  /** Writes the file with the overlay on top (`entries`: the file as just read); never throws. */
  #save(store: StoreOnDisk<T, C>, entries: readonly T[]): void {
    const pending = this.#pending(false);
    if (pending.length === 0) return;
    try {
      store.write(this.#merged(store, entries));
    } catch (err) {
      this.#notSaved(store, err as Error);
      return;
    }
    for (const u of pending) u.saved = true;
    const what = pending.map((u) => store.changes.describe(u.change));
    this.#log.info({ event: 'state_persisted', store: store.path, changes: what }, `${store.what}: ${what.join(', ')} saved to ${store.path}`);
  }

  #notSaved(store: StoreOnDisk<T, C>, err: Error): void {
    const what = this.#pending(false).map((u) => store.changes.describe(u.change));
    this.#log.warn(
      { event: 'state_not_persisted', store: store.path, changes: what, errno: err instanceof StateWriteError ? err.errno : null, error: err.message },
      `${store.what}: ${what.join(', ')} in force but not saved (${err.message}); retrying every ${unsavedRetryMs / 1000} s and at every control request, lost if the instance stops before`,
    );
  }

  #pending(saved: boolean): Unsaved<C>[] {
    return [...this.#unsaved.values()].filter((u) => u.saved === saved);
  }

  #schedule(on: boolean): void {
    if (on && !this.#timer) {
      this.#timer = setInterval(() => void this.retry(), unsavedRetryMs);
      this.#timer.unref();
    } else if (!on && this.#timer) {
      clearInterval(this.#timer);
      this.#timer = null;
    }
  }
}

export const denyListStore = (dataDir: string): StoreOnDisk<DenyEntry, DenyChange> => ({
  what: 'deny list',
  refusedEvent: 'deny_list_refused',
  invalidCode: 'PCL_DENY_LIST_INVALID',
  path: denyListFile(dataDir),
  read: () => readDenyList(dataDir),
  write: (entries) => writeDenyList(dataDir, entries),
  changes: denyChanges,
});

export const apiKeyStore = (dataDir: string): StoreOnDisk<ApiKeyRecord, KeyRevocation> => ({
  what: 'API keys',
  refusedEvent: 'api_keys_refused',
  invalidCode: 'PCL_API_KEYS_INVALID',
  path: apiKeysFile(dataDir),
  read: () => readApiKeys(dataDir),
  write: (records) => writeApiKeys(dataDir, records),
  changes: keyRevocations,
});
