import type { X509Certificate } from 'node:crypto';
import type { Config } from '../config/index.js';
import type { Logger, Metrics } from '../observe/index.js';

const day = 86_400_000;

interface Watched {
  readonly site: string;
  readonly role: 'served' | 'client_ca';
  /** Metric label: the first 16 hex digits of the SHA-256 fingerprint (bounded by the config). */
  readonly certificate: string;
  readonly subject: string;
  readonly file: string | null;
  readonly notAfter: number;
}

/**
 * Watches the expiry of every served certificate and every trusted client
 * CA: a gauge of the seconds left (computed at scrape), and one warning event
 * each time a certificate crosses a threshold of `tls.expiryWarnings` (an
 * error once it has expired). Checked at every apply and hourly. Lifecycle:
 * create → apply(config) at start and on every reload → stop.
 */
export class ExpiryMonitor {
  readonly #log: Logger;
  #watched: readonly Watched[] = [];
  #thresholds: readonly number[] = [];
  /** By role, site and certificate: the smallest threshold already warned about, so each is said once. */
  readonly #warned = new Map<string, number>();
  readonly #timer: NodeJS.Timeout;

  constructor(log: Logger, metrics: Metrics, checkEveryMs = 3_600_000) {
    this.#log = log;
    metrics.watchExpiry(() => this.#watched);
    this.#timer = setInterval(() => this.#check(), checkEveryMs).unref();
  }

  apply(config: Config): void {
    const watched: Watched[] = [];
    const add = (site: string, role: Watched['role'], cert: X509Certificate, file: string | null) =>
      watched.push({ site, role, certificate: cert.fingerprint256.replace(/:/g, '').toLowerCase().slice(0, 16), subject: cert.subject.split('\n').join(', '), file, notAfter: new Date(cert.validTo).getTime() });
    for (const site of config.sites) {
      for (const pair of site.certificates) add(site.id, 'served', pair.leaf, pair.certFile);
      for (const ca of site.clientAuth?.caCerts ?? []) add(site.id, 'client_ca', ca, null);
    }
    this.#watched = watched;
    this.#thresholds = config.tls.expiryWarningsMs;
    this.#check();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  #check(now = Date.now()): void {
    for (const w of this.#watched) {
      const left = w.notAfter - now;
      const crossed = left <= 0 ? 0 : this.#thresholds.filter((t) => left <= t).at(-1);
      if (crossed === undefined) continue;
      const key = `${w.role} ${w.site} ${w.certificate}`;
      const warned = this.#warned.get(key);
      if (warned !== undefined && warned <= crossed) continue;
      this.#warned.set(key, crossed);
      const what = w.role === 'served' ? `the certificate ${w.file} of site ${w.site}` : `the client CA ${w.subject} trusted by site ${w.site}`;
      const fields = { event: 'certificate_expiring', site: w.site, role: w.role, certificate: w.certificate, subject: w.subject, file: w.file, notAfter: new Date(w.notAfter).toISOString(), daysLeft: Math.max(0, Math.floor(left / day)) };
      if (left <= 0) this.#log.error({ ...fields, expired: true }, `${what} has EXPIRED (${fields.notAfter})`);
      else this.#log.warn(fields, `${what} expires in ${fields.daysLeft} day(s), on ${fields.notAfter}`);
    }
  }
}
