import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { PortcullisError } from '../../src/errors.js';
import { StateWriteError, writeFileAtomic, writeFileAtomicAsync } from '../../src/state/index.js';

/** A 256 KiB tmpfs (tests run as root): filled to ENOSPC or remounted read-only for real. */
describe('atomic state writes on a filesystem that refuses them', () => {
  const home = mkdtempSync(join(tmpdir(), 'pcl-atomic-'));
  const mount = join(home, 'fs');
  const target = join(mount, 'store.json');
  const writers = [
    ['writeFileAtomic', async (path: string, data: string) => writeFileAtomic(path, data, 0o600)],
    ['writeFileAtomicAsync', (path: string, data: string) => writeFileAtomicAsync(path, data, 0o600)],
  ] as const;

  /** The error a write throws (the test fails when it does not throw). */
  async function failure(write: (path: string, data: string) => Promise<void>, path: string, data: string): Promise<StateWriteError> {
    const err = await write(path, data).then(
      () => assert.fail('the write succeeded'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof StateWriteError, String(err));
    assert.ok(err instanceof PortcullisError);
    assert.equal(err.code, 'PCL_STATE_WRITE_FAILED');
    return err;
  }

  const leftovers = () => readdirSync(mount).filter((f) => f.endsWith('.tmp'));

  before(() => {
    mkdirSync(mount);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', mount]);
  });
  after(() => {
    try {
      execFileSync('umount', [mount]);
    } catch {
      execFileSync('umount', ['-l', mount]);
    }
    rmSync(home, { recursive: true, force: true });
  });

  test('on a full filesystem: removes its temp file, keeps the old content, and names the file, ENOSPC and the fix', async () => {
    writeFileSync(target, 'old');
    const filler = join(mount, 'filler');
    const fd = openSync(filler, 'w');
    try {
      for (;;) writeSync(fd, Buffer.alloc(16 * 1024));
    } catch (err) {
      assert.equal((err as NodeJS.ErrnoException).code, 'ENOSPC');
    } finally {
      closeSync(fd);
    }
    try {
      for (const [name, write] of writers) {
        const err = await failure(write, target, 'x'.repeat(64 * 1024));
        assert.equal(err.message, `cannot write ${target}: the filesystem holding ${mount} is full (ENOSPC); free space on that filesystem, then try again`, name);
        assert.equal(err.errno, 'ENOSPC');
        assert.equal(err.file, target);
        assert.equal((err.cause as NodeJS.ErrnoException).code, 'ENOSPC', 'the original error is the cause');
        assert.deepEqual(leftovers(), [], `${name} left no temp file`);
        assert.equal(readFileSync(target, 'utf8'), 'old', `${name} left the old content`);
      }
    } finally {
      rmSync(filler);
    }
    // with space again, the same write goes through
    writeFileAtomic(target, 'new', 0o600);
    assert.equal(readFileSync(target, 'utf8'), 'new');
  });

  test('on a read-only filesystem: names EROFS and both ways out', async () => {
    execFileSync('mount', ['-o', 'remount,ro', mount]);
    try {
      for (const [name, write] of writers) {
        const err = await failure(write, target, 'newer');
        assert.equal(err.message, `cannot write ${target}: ${mount} is on a read-only filesystem (EROFS); remount it read-write, or point dataDir at a writable folder, then try again`, name);
        assert.equal(err.fix, 'remount it read-write', 'the fix that also works for a running instance');
        assert.equal(readFileSync(target, 'utf8'), 'new');
      }
    } finally {
      execFileSync('mount', ['-o', 'remount,rw', mount]);
    }
    assert.deepEqual(leftovers(), []);
  });

  test('a folder that cannot be created fails the same way, with the errno and the folder to check', async () => {
    writeFileSync(join(mount, 'plain-file'), '');
    const path = join(mount, 'plain-file', 'inner', 'store.json');
    for (const [name, write] of writers) {
      const err = await failure(write, path, 'x');
      assert.equal(err.errno, 'ENOTDIR', name);
      assert.match(err.message, new RegExp(`^cannot write ${path}: ENOTDIR: not a directory, mkdir .* \\(ENOTDIR\\); check ${join(mount, 'plain-file', 'inner')}, then try again$`), name);
    }
  });
});

describe('the message of a failed state write', () => {
  const errno = (code: string) => Object.assign(new Error(`${code}: from the kernel`), { code });
  for (const [code, text] of [
    ['EACCES', 'permission denied (EACCES); check the permissions of /srv/pcl (owner and mode): the user running portcullis must be able to create files there, then try again'],
    ['EPERM', 'permission denied (EPERM); check the permissions of /srv/pcl (owner and mode): the user running portcullis must be able to create files there, then try again'],
    ['EDQUOT', 'the disk quota of this user on the filesystem holding /srv/pcl is used up (EDQUOT); free space or raise the quota, then try again'],
    ['EIO', 'EIO: from the kernel (EIO); check /srv/pcl, then try again'],
  ] as const) {
    test(`names the file, ${code} and what to do`, () => {
      const cause = errno(code);
      const err = new StateWriteError('/srv/pcl/api-keys.json', cause);
      assert.equal(err.message, `cannot write /srv/pcl/api-keys.json: ${text}`);
      assert.equal(err.cause, cause);
    });
  }
});
