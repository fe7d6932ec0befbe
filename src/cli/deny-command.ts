import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { errorCatalog, PortcullisError, type ErrorCode } from '../errors.js';
import { controlSocketFile, denyListFile } from '../state/index.js';
import { sendControl } from '../supervisor/index.js';
import { readDenyList, writeDenyList } from '../trust/index.js';
import { denyEntry, denyKey, type DenyEntry } from '../trust/index.js';
import { dataDirOf, sharesState } from './data-dir.js';
import { configFileFor } from './start-command.js';
import { notifyRunningInstance, writeOrHandOver } from './instance-io.js';

export interface DenyTarget {
  readonly config?: string;
  readonly fingerprint?: string;
  readonly serial?: string;
  readonly issuer?: string;
  /** A PEM certificate file: blocked by its fingerprint. */
  readonly cert?: string;
  readonly note?: string;
}

function targetEntry(opts: DenyTarget): DenyEntry {
  let fingerprint = opts.fingerprint;
  if (opts.cert !== undefined) {
    if (fingerprint !== undefined || opts.serial !== undefined) throw new PortcullisError('PCL_CLI_USAGE', 'give one of --cert, --fingerprint, or --serial with --issuer');
    try {
      fingerprint = `sha256:${new X509Certificate(readFileSync(opts.cert)).fingerprint256}`;
    } catch (err) {
      throw new PortcullisError('PCL_CLI_USAGE', `--cert ${opts.cert}: not a readable PEM or DER certificate (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
  }
  // bounded so that an entry always fits a control request, which also carries it when the list cannot be saved
  if (opts.note !== undefined && opts.note.length > 1024) throw new PortcullisError('PCL_CLI_USAGE', `--note is ${opts.note.length} characters long; keep it to 1024 (a ticket number and a few words)`);
  const entry = denyEntry({ fingerprint, serial: opts.serial, issuer: opts.issuer }, opts.note ?? null, new Date());
  if (typeof entry === 'string') throw new PortcullisError('PCL_CLI_USAGE', entry);
  return entry;
}

/** The certificate(s) an entry blocks, as the commands print it. */
const blocked = (e: DenyEntry): string => ('fingerprint' in e ? e.fingerprint : `serial ${e.serial} issuer "${e.issuer}"`);

function describe(e: DenyEntry): string {
  return `${blocked(e)}  added ${e.addedAt}${e.note ? `  (${e.note})` : ''}`;
}

/**
 * `portcullis deny add|remove|list`: the instant deny list, persisted in
 * dataDir/deny-list.json. add and remove rewrite the file atomically and ask
 * the running instance (control socket) to apply it: connections presenting
 * a newly blocked certificate are closed at once. When the file cannot be
 * written (full disk, read-only filesystem), add still hands the entry to the
 * running instance, which applies it and keeps trying to save it; remove
 * changes nothing: an unblock that is not saved is never applied.
 *
 * With `state.backend: redis` the file is the instance's copy of the
 * cluster's list: add works as above (the instance also writes the entry to
 * Redis, or queues it during an outage); remove goes through the running
 * instance only, which removes the entry from Redis or, when it cannot,
 * refuses (PCL_STATE_UNAVAILABLE) and nothing changes.
 */
export async function runDeny(action: 'add' | 'remove' | 'list', opts: DenyTarget): Promise<void> {
  const file = configFileFor(opts.config);
  const dataDir = dataDirOf(file);
  const entries = readDenyList(dataDir);
  if (action === 'list') {
    if (entries.length === 0) process.stdout.write(`the deny list (${denyListFile(dataDir)}) is empty\n`);
    for (const e of entries) process.stdout.write(`${describe(e)}\n`);
    return;
  }
  const entry = targetEntry(opts);
  const key = denyKey(entry);
  const present = entries.find((e) => denyKey(e) === key);
  // what a cluster's instance tells the cluster; the memory backend re-reads the file alone
  const shared = sharesState(file);
  if (action === 'add') {
    if (present) process.stdout.write(`already on the deny list: ${describe(entry)}\n`);
    else {
      // a block must not wait for disk space: unsaved, it still goes to the running instance
      const how = await writeOrHandOver(() => writeDenyList(dataDir, [...entries, entry]), dataDir, { command: 'deny-list', unpersisted: { deny: entry } }, `deny list entry ${blocked(entry)}`);
      process.stdout.write(`added to the deny list: ${describe(entry)}\n`);
      if (how === 'handed over') return;
    }
    await notifyRunningInstance(dataDir, shared ? { command: 'deny-list', edit: { add: present ?? entry } } : { command: 'deny-list' }, 'list');
    return;
  }
  if (!present) throw new PortcullisError('PCL_CLI_USAGE', `not on the deny list: ${blocked(entry)}; see portcullis deny list`);
  if (shared) return removeFromCluster(dataDir, present);
  writeDenyList(dataDir, entries.filter((e) => denyKey(e) !== key));
  process.stdout.write(`removed from the deny list: ${blocked(entry)}\n`);
  await notifyRunningInstance(dataDir, { command: 'deny-list' }, 'list');
}

/** A removal from a cluster's list: made by the running instance through Redis, which rewrites the local copy itself. */
async function removeFromCluster(dataDir: string, entry: DenyEntry): Promise<void> {
  let result;
  try {
    result = await sendControl(controlSocketFile(dataDir), { command: 'deny-list', edit: { remove: entry } }, 10_000);
  } catch (err) {
    if (!(err instanceof PortcullisError && err.code === 'PCL_CONTROL_UNREACHABLE')) throw err;
    throw new PortcullisError('PCL_STATE_UNAVAILABLE', `${blocked(entry)} NOT removed: no running instance answers on ${controlSocketFile(dataDir)}. With state.backend: redis the deny list is the cluster's, and a removal is made by a running instance, through Redis; run the command where an instance of the cluster runs.`, { cause: err });
  }
  if (!result.ok) throw new PortcullisError(result.code in errorCatalog ? (result.code as ErrorCode) : 'PCL_RELOAD_FAILED', result.message);
  process.stdout.write(`removed from the deny list: ${blocked(entry)}\n${result.message}\n`);
}
