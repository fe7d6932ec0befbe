import type { AdminListener } from '../admin/index.js';
import type { Logger } from '../observe/index.js';

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
