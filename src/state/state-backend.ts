import { readFile } from 'node:fs/promises';
import { writeFileAtomicAsync } from './atomic-file.js';
import { stateValueFile } from './data-dir.js';

/**
 * What instances share: durable values and named locks. `memory` (the
 * default) keeps values as files under dataDir and locks within the process —
 * enough for one instance, which is all a dataDir may serve; the cluster
 * backend shares both through Redis.
 */
export interface StateBackend {
  /** The stored value, or null when there is none. */
  read(key: string): Promise<Buffer | null>;
  /** Stores a value atomically (readers see the old or the new one); `secret` values are readable by the owner only. */
  write(key: string, value: string | Buffer, opts?: { readonly secret?: boolean }): Promise<void>;
  /**
   * Runs `fn` holding the lock `name`: whoever asks while it is held waits, so
   * two never run at once. `lease.fence` grows with every holder; a write
   * through `lease.write` lands only while no later holder exists (fencing: a
   * holder that stalled past its lock's expiry cannot overwrite its
   * successor's work).
   */
  withLock<T>(name: string, fn: (lease: LockLease) => Promise<T>): Promise<T>;
}

/** What a lock's holder may do that an expired holder may not. */
export interface LockLease {
  readonly fence: number;
  /** Aborted when the lock was lost (its holder stalled past the lock's expiry, or the backend went away). */
  readonly signal: AbortSignal;
  /** `StateBackend.write`, refused (`false`) when a later holder of the lock exists. */
  write(key: string, value: string | Buffer, opts?: { readonly secret?: boolean }): Promise<boolean>;
}

const keyPattern = /^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/;

/** The `memory` backend: keys are paths under dataDir (so the config loader finds ACME certificates where it looks). */
export function memoryState(dataDir: string): StateBackend {
  const locks = new Map<string, Promise<unknown>>();
  let fences = 0;
  const fileOf = (key: string): string => {
    if (!keyPattern.test(key) || key.split('/').some((s) => s === '..' || s === '.')) throw new Error(`state key ${JSON.stringify(key)} is not a plain relative path`);
    return stateValueFile(dataDir, key);
  };
  return {
    async read(key) {
      try {
        return await readFile(fileOf(key));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw err;
      }
    },
    write: (key, value, opts = {}) => writeFileAtomicAsync(fileOf(key), value, opts.secret ? 0o600 : 0o644),
    withLock<T>(name: string, fn: (lease: LockLease) => Promise<T>): Promise<T> {
      const previous = locks.get(name) ?? Promise.resolve();
      // one process: a holder cannot be overtaken, so every write of the holder lands
      const hold = () =>
        fn({
          fence: ++fences,
          signal: new AbortController().signal,
          write: async (key, value, opts = {}) => {
            await writeFileAtomicAsync(fileOf(key), value, opts.secret ? 0o600 : 0o644);
            return true;
          },
        });
      const run = previous.then(hold, hold);
      const settled = run.catch(() => {});
      locks.set(name, settled);
      void settled.then(() => {
        if (locks.get(name) === settled) locks.delete(name);
      });
      return run;
    },
  };
}
