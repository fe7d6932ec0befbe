import { closeSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { PortcullisError } from '../errors.js';
import { StateWriteError } from '../state/index.js';

/**
 * Runs `fn` holding the CA folder's lock: one change at a time across the
 * processes of this machine (the instance, its CLI commands), through an
 * exclusive lock file that is taken over when the process that left it is
 * gone. Creates the folder (0700) when it does not exist yet.
 */
export async function lockCaFolder<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const lock = join(dir, 'db.lock');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  for (let attempt = 0; ; attempt++) {
    try {
      const fd = openSync(lock, 'wx', 0o600);
      try {
        writeSync(fd, String(process.pid));
      } catch (err) {
        // a full disk creates the file but not its content: leave no empty lock behind
        unlinkSync(lock);
        throw err;
      } finally {
        closeSync(fd);
      }
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new StateWriteError(lock, err);
      const holder = Number(readFileSync(lock, 'utf8') || 0);
      if (!holder || !alive(holder)) {
        unlinkSync(lock);
        continue;
      }
      if (attempt > 100) throw new PortcullisError('PCL_PKI_STORE_INVALID', `${lock} is held by process ${holder}; wait for it to finish, or remove the file if it is not a Portcullis command`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  try {
    return await fn();
  } finally {
    unlinkSync(lock);
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
