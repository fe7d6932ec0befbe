import { PortcullisError } from '../errors.js';
import { denyListFile, readStoreList, writeFileAtomic } from '../state/index.js';
import { denyEntry, type DenyEntry } from './deny-list.js';

/** One entry as a store keeps it (the file, the cluster's Redis): the entry, or what is wrong with it. */
export function storedDenyEntry(e: Record<string, unknown>): DenyEntry | string {
  return denyEntry(
    { fingerprint: e.fingerprint as string | undefined, serial: e.serial as string | undefined, issuer: e.issuer as string | undefined },
    typeof e.note === 'string' ? e.note : null,
    new Date(typeof e.addedAt === 'string' ? e.addedAt : 0),
  );
}

/**
 * Reads the persisted deny list; none yet is an empty list. A file that
 * cannot be used is an error (PCL_DENY_LIST_INVALID), never an empty list:
 * losing blocks silently would readmit revoked clients.
 */
export function readDenyList(dataDir: string): DenyEntry[] {
  const path = denyListFile(dataDir);
  const entries = readStoreList(path, 'entries', 'PCL_DENY_LIST_INVALID', 'it lists {"fingerprint"} or {"serial","issuer"} entries');
  return entries.map((e, i) => {
    const entry = storedDenyEntry(e);
    if (typeof entry === 'string') throw new PortcullisError('PCL_DENY_LIST_INVALID', `${path} entries[${i}]: ${entry}`);
    return entry;
  });
}

/** Replaces the persisted list; a crash leaves the old or the new list, never a torn one. */
export function writeDenyList(dataDir: string, entries: readonly DenyEntry[]): void {
  writeFileAtomic(denyListFile(dataDir), `${JSON.stringify({ version: 1, entries }, null, 2)}\n`, 0o600);
}
