import type { AdminListener } from '../admin/index.js';
import { readLeniently } from '../config/index.js';
import type { Logger } from '../observe/index.js';
import { ensureIssuedCertificate, ensureLocalCa, internalLifetimeDays } from '../pki/index.js';
import { caFolder, internalCertificateFiles } from '../state/index.js';

/**
 * Issues or renews the `internal: true` certificates a config file asks for,
 * before the config is loaded (loading only reads files): one per site, for
 * all its hosts, from the built-in CA under dataDir, renewed once two thirds
 * of its lifetime have passed. Reads the YAML leniently: whatever is wrong
 * with it is for the load that follows to report. Returns the files it wrote.
 */
export async function issueInternalCertificates(text: string, configFile: string): Promise<string[]> {
  const { dataDir, internalSites } = readLeniently(text, configFile);
  if (internalSites.length === 0) return [];
  const ca = await ensureLocalCa(caFolder(dataDir));
  const written: string[] = [];
  for (const { hosts } of internalSites) {
    const files = internalCertificateFiles(dataDir, hosts[0] as string);
    if (await ensureIssuedCertificate(ca, { ...files, hosts, lifetimeDays: internalLifetimeDays })) written.push(files.certFile);
  }
  return written;
}

/** What the hourly renewal checks: the config's `internal: true` certificates and the admin listener's own. */
export function renewalOf(source: { renewInternal?(): Promise<string[]> }, admin: AdminListener | null): () => Promise<string[]> {
  return async () => [...((await source.renewInternal?.()) ?? []), ...((await admin?.renewCertificate()) ?? [])];
}

/** Checks the `internal: true` certificates hourly; a renewed pair is picked up by the file watcher (with the pre-swap checks). Returns the stop function. */
export function scheduleInternalRenewal(renew: () => Promise<string[]>, log: Logger, everyMs = 3_600_000): () => void {
  const timer = setInterval(() => {
    renew().then(
      (files) => {
        if (files.length > 0) log.info({ event: 'internal_certificate_renewed', files }, `the built-in CA renewed ${files.join(', ')}`);
      },
      (err: Error) => log.error({ event: 'internal_certificate_renewal_failed', error: err.message }, 'renewing internal certificates failed; the current ones keep serving'),
    );
  }, everyMs).unref();
  return () => clearInterval(timer);
}
