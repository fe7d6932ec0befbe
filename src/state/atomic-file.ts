import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { mkdir, open, rename, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { PortcullisError } from '../errors.js';

/**
 * A state file that could not be written (PCL_STATE_WRITE_FAILED): which file,
 * the errno, what it means and the fix, as separate fields so a caller can
 * say more than the message (`portcullis deny add` tells what it applied
 * anyway). The original error is the `cause`.
 */
export class StateWriteError extends PortcullisError {
  readonly file: string;
  /** ENOSPC, EROFS, EACCES …; the Node error code, or "unknown". */
  readonly errno: string;
  /** "the filesystem holding /var/lib/portcullis is full". */
  readonly problem: string;
  /** What makes the file writable again where it is: "free space on that filesystem". */
  readonly fix: string;
  constructor(file: string, cause: unknown) {
    const errno = (cause as NodeJS.ErrnoException | null)?.code ?? 'unknown';
    const { problem, fix, orElse } = explain(dirname(file), errno, cause);
    super('PCL_STATE_WRITE_FAILED', `cannot write ${file}: ${problem} (${errno}); ${fix}${orElse ? `, or ${orElse}` : ''}, then try again`, { cause });
    this.name = 'StateWriteError';
    this.file = file;
    this.errno = errno;
    this.problem = problem;
    this.fix = fix;
  }
}

/** What an errno means for a file under `folder`, what makes it writable again, and what else would do (not for a running instance). */
function explain(folder: string, errno: string, cause: unknown): { problem: string; fix: string; orElse?: string } {
  switch (errno) {
    case 'ENOSPC':
      return { problem: `the filesystem holding ${folder} is full`, fix: 'free space on that filesystem' };
    case 'EDQUOT':
      return { problem: `the disk quota of this user on the filesystem holding ${folder} is used up`, fix: 'free space or raise the quota' };
    case 'EROFS':
      return { problem: `${folder} is on a read-only filesystem`, fix: 'remount it read-write', orElse: 'point dataDir at a writable folder' };
    case 'EACCES':
    case 'EPERM':
      return { problem: 'permission denied', fix: `check the permissions of ${folder} (owner and mode): the user running portcullis must be able to create files there` };
    default:
      return { problem: (cause as Error | null)?.message ?? String(cause), fix: `check ${folder}` };
  }
}

/** Removes a temp file left by a failed write; best effort (on a read-only filesystem there is none to remove). */
function removeTemp(temp: string): void {
  try {
    unlinkSync(temp);
  } catch {
    // never created, or cannot be removed: nothing more to do
  }
}

/**
 * Writes a file so that readers see either the old or the new content, never
 * a torn one, even if the process dies mid-write: temp file in the same
 * folder, fsync, rename over the target, fsync the folder. On failure
 * (full disk, read-only filesystem, permissions) the temp file is removed,
 * the target is left as it was, and a StateWriteError names the file, the
 * errno and the fix. Not safe to call concurrently for one path from two
 * processes: the last rename wins.
 */
export function writeFileAtomic(path: string, data: string | Buffer, mode = 0o644): void {
  const dir = dirname(path);
  const temp = join(dir, `.${randomBytes(6).toString('hex')}.tmp`);
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const fd = openSync(temp, 'wx', mode);
    try {
      writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, path);
    const dirFd = openSync(dir, 'r');
    try {
      fsyncSync(dirFd);
    } finally {
      closeSync(dirFd);
    }
  } catch (err) {
    removeTemp(temp);
    throw new StateWriteError(path, err);
  }
}

/** The same guarantee without blocking the event loop, for files written while serving; fails the same way. */
export async function writeFileAtomicAsync(path: string, data: string | Buffer, mode = 0o644): Promise<void> {
  const dir = dirname(path);
  const temp = join(dir, `.${randomBytes(6).toString('hex')}.tmp`);
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const file = await open(temp, 'wx', mode);
    try {
      await file.writeFile(data);
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(temp, path);
    const folder = await open(dir, 'r');
    try {
      await folder.sync();
    } finally {
      await folder.close();
    }
  } catch (err) {
    await unlink(temp).catch(() => {});
    throw new StateWriteError(path, err);
  }
}
