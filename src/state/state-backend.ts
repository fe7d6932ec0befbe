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
  /** Runs `fn` holding the lock `name`: whoever asks while it is held waits, so two never run at once. */
  withLock<T>(name: string, fn: () => Promise<T>): Promise<T>;
}

const keyPattern = /^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/;

/** The `memory` backend: keys are paths under dataDir (so the config loader finds ACME certificates where it looks). */
export function memoryState(dataDir: string): StateBackend {
  const locks = new Map<string, Promise<unknown>>();
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
    withLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
      const previous = locks.get(name) ?? Promise.resolve();
      const run = previous.then(fn, fn);
      const settled = run.catch(() => {});
      locks.set(name, settled);
      void settled.then(() => {
        if (locks.get(name) === settled) locks.delete(name);
      });
      return run;
    },
  };
}
