import { mkdirSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { PortcullisError } from '../errors.js';
import type { Logger } from '../observe/index.js';
import { writeFileAtomic, type LockLease, type StateBackend } from '../state/index.js';
import { lockCaFolder } from './ca-folder-lock.js';

/**
 * The files of the CA folder a cluster shares, keys before their
 * certificates: a reader of the local copy never finds a certificate whose
 * key is not written yet. The folder lock and anything else in the folder
 * stay local.
 */
const sharedFiles = ['ca.key', 'ca.pem', 'issuing.key', 'issuing.pem', 'db.json', 'ca.crl', 'issuing.crl'] as const;
/** Readable by the owner only, as `CaStore` and `ensureLocalCa` write them. */
const ownerOnly = new Set<string>(['ca.key', 'issuing.key', 'db.json']);
/** The state key of the cluster's copy, and the name of its lock. */
const snapshotKey = 'ca/snapshot';
const lockName = 'ca';

type Files = Readonly<Record<string, string>>;

/** The cluster's copy of the CA folder: every shared file, numbered by the change that wrote it (1, 2, …). */
interface Snapshot {
  readonly version: 1;
  readonly generation: number;
  readonly files: Files;
}

/** What a pull found: the cluster's generation (0: the cluster has no CA yet) and files, and which local files it rewrote. */
export interface Pulled {
  readonly generation: number;
  readonly files: Files;
  readonly changed: readonly string[];
}

const unavailable = (what: string, err: unknown) =>
  new PortcullisError('PCL_STATE_SHARED_WRITE_FAILED', `the built-in CA could not ${what} the cluster's Redis (${(err as Error).message}); nothing was changed: try again once Redis answers`, { cause: err });

/**
 * The built-in CA of a cluster (`state.backend: redis`): one CA for every
 * instance. Redis holds the source of truth — the whole CA folder (root and
 * intermediate keys and certificates, the database of issued certificates
 * and enrollment tokens, the CRLs) as one value — and each instance's
 * `dataDir/ca` is a local copy that everything else (the CRL listener, the
 * `clientAuth` files, internal certificates) reads as before.
 *
 * A change runs under the cluster lock of the CA (with fencing) and this
 * machine's folder lock: pull the cluster's copy into the folder, change the
 * files as the memory backend would, push them back in one fenced write
 * (refused once a later holder of the lock exists, so a holder that stalled
 * past its lock's expiry cannot overwrite its successor's change), then
 * announce the new generation. Two spenders of one enrollment token are thus
 * serialised, and the second finds it spent; a change that cannot be
 * recorded fails with PCL_STATE_SHARED_WRITE_FAILED before anything is
 * handed out. Safe to call concurrently: changes queue on the lock.
 */
export class CaReplica {
  constructor(
    private readonly state: StateBackend,
    /** Tells the other instances that `generation` is in Redis; never rejects (it retries on its own). */
    private readonly announce: (generation: number) => Promise<void>,
    private readonly log: Logger,
  ) {}

  /** Runs `fn` on an up-to-date local copy holding both locks; records what it changed in the folder. Rejects with what `fn` threw, or PCL_STATE_SHARED_WRITE_FAILED. */
  async change<T>(dir: string, fn: () => Promise<T>): Promise<T> {
    let locked = false;
    try {
      return await this.state.withLock(lockName, (lease) => {
        locked = true;
        return lockCaFolder(dir, async () => {
          const base = await this.pull(dir);
          const result = await fn();
          await this.#push(dir, lease, base);
          return result;
        });
      });
    } catch (err) {
      throw locked ? err : unavailable('take the lock of', err);
    }
  }

  /** Brings the local copy up to date with the cluster's (under this machine's folder lock); returns what it rewrote. */
  refresh(dir: string): Promise<Pulled> {
    return lockCaFolder(dir, () => this.pull(dir));
  }

  /**
   * Writes the cluster's files into `dir` where they differ. A local CA with
   * another root (a machine that ran alone before joining) is moved aside
   * into `dir/replaced-<time>/`, never overwritten: its keys and database
   * may still matter to someone. With no CA in the cluster yet, nothing is
   * written and the next push records the local one, if any.
   */
  async pull(dir: string): Promise<Pulled> {
    const snapshot = await this.#read();
    if (!snapshot) return { generation: 0, files: {}, changed: [] };
    const local = readLocal(dir);
    if (local['ca.pem'] !== undefined && local['ca.pem'] !== snapshot.files['ca.pem']) this.#moveAside(dir, local);
    const current = readLocal(dir);
    const changed: string[] = [];
    for (const name of sharedFiles) {
      const text = snapshot.files[name];
      if (text === undefined || text === current[name]) continue;
      writeFileAtomic(join(dir, name), text, ownerOnly.has(name) ? 0o600 : 0o644);
      changed.push(name);
    }
    return { generation: snapshot.generation, files: snapshot.files, changed };
  }

  async #read(): Promise<Snapshot | null> {
    let raw: Buffer | null;
    try {
      raw = await this.state.read(snapshotKey);
    } catch (err) {
      throw unavailable('read', err);
    }
    if (!raw) return null;
    try {
      const snapshot = JSON.parse(raw.toString('utf8')) as Snapshot;
      if (snapshot.version !== 1 || !Number.isInteger(snapshot.generation) || typeof snapshot.files !== 'object' || snapshot.files === null) throw new Error('not a version 1 snapshot');
      return snapshot;
    } catch (err) {
      throw new PortcullisError('PCL_PKI_STORE_INVALID', `the cluster's copy of the built-in CA (state key ${snapshotKey}) cannot be read (${(err as Error).message}); delete that key in Redis, then start an instance (or run portcullis ca list) on a machine whose dataDir/ca holds the CA: its local copy is then recorded`, { cause: err });
    }
  }

  /** Records the local files when they differ from what was pulled; a later holder of the lock refuses it. */
  async #push(dir: string, lease: LockLease, base: Pulled): Promise<void> {
    const files = readLocal(dir);
    if (sameFiles(files, base.files)) return;
    const generation = base.generation + 1;
    const snapshot: Snapshot = { version: 1, generation, files };
    let written: boolean;
    try {
      written = await lease.write(snapshotKey, JSON.stringify(snapshot), { secret: true });
    } catch (err) {
      throw unavailable('write to', err);
    }
    if (!written) {
      throw new PortcullisError('PCL_STATE_SHARED_WRITE_FAILED', 'the built-in CA\'s change was not recorded: another holder took the cluster lock of the CA meanwhile (this process stalled past the lock\'s expiry); nothing was handed out: try again');
    }
    await this.announce(generation);
  }

  #moveAside(dir: string, local: Files): void {
    const aside = join(dir, `replaced-${new Date().toISOString().replace(/[:.]/g, '-')}`);
    mkdirSync(aside, { recursive: true, mode: 0o700 });
    for (const name of Object.keys(local)) renameSync(join(dir, name), join(aside, name));
    this.log.warn({ event: 'ca_replaced_by_cluster', folder: dir, movedTo: aside }, `the built-in CA in ${dir} is not the cluster's: moved it to ${aside} and took the cluster's CA`);
  }
}

function readLocal(dir: string): Files {
  const files: Record<string, string> = {};
  for (const name of sharedFiles) {
    try {
      files[name] = readFileSync(join(dir, name), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new PortcullisError('PCL_PKI_STORE_INVALID', `cannot read ${join(dir, name)} (${(err as NodeJS.ErrnoException).code}); check its permissions`, { cause: err });
    }
  }
  return files;
}

function sameFiles(a: Files, b: Files): boolean {
  const names = new Set([...Object.keys(a), ...Object.keys(b)]);
  return [...names].every((n) => a[n] === b[n]);
}
