import { readFile } from 'node:fs/promises';
import type { Logger } from '../observe/index.js';
import { acmeCertificateFiles, acmeCertificateKeys, redisState, writeFileAtomicAsync, type RedisLink, type StateBackend } from '../state/index.js';
import { storedPair } from './stored-certificate.js';

/** The channel a new certificate is announced on (its site's first host). */
const channel = 'acme-certificates';

/**
 * The ACME certificates of a cluster (`state.backend: redis`): the ACME
 * manager stores them in Redis (state keys of `acmeCertificateKeys`), and
 * every instance copies them into its own dataDir, where the config loader
 * reads them (`provision-acme.ts`), then reloads. The copy happens when a
 * certificate is announced, for every certificate before the instance's
 * first load, and again after an outage (announcements sent meanwhile are
 * lost). A set in Redis lists the certificates for those full re-reads.
 */
export class SharedAcmeCertificates {
  readonly #state: StateBackend;
  readonly #index: string;
  /** Certificates stored here whose announcement failed: announced again after the next reconnection. */
  readonly #unannounced = new Set<string>();

  constructor(
    private readonly link: RedisLink,
    private readonly dataDir: string,
    private readonly log: Logger,
  ) {
    this.#state = redisState(link);
    this.#index = link.key('acme', 'certificates');
  }

  /**
   * Copies the certificate the cluster holds for the site named by
   * `firstHost` into dataDir when it differs (the key first, 0600; each file
   * atomically). Skipped while the two values do not form a pair — between
   * the two writes of a new one, whose announcement follows. Returns whether
   * it wrote. Rejects when Redis or the disk fails.
   */
  async pull(firstHost: string): Promise<boolean> {
    const keys = acmeCertificateKeys(firstHost);
    const [cert, key] = await Promise.all([this.#state.read(keys.cert), this.#state.read(keys.key)]);
    if (!cert || !key || !storedPair(cert.toString('utf8'), key.toString('utf8'))) return false;
    const files = acmeCertificateFiles(this.dataDir, firstHost);
    const [certNow, keyNow] = await Promise.all([readFile(files.certFile).catch(() => null), readFile(files.keyFile).catch(() => null)]);
    if (certNow?.equals(cert) && keyNow?.equals(key)) return false;
    await writeFileAtomicAsync(files.keyFile, key, 0o600);
    await writeFileAtomicAsync(files.certFile, cert, 0o644);
    return true;
  }

  /** Copies every certificate the cluster holds; returns the first hosts of those it wrote. */
  async pullAll(): Promise<string[]> {
    const changed: string[] = [];
    for (const host of (await this.link.redis.smembers(this.#index)).sort()) if (await this.pull(host)) changed.push(host);
    return changed;
  }

  /**
   * After this instance stored the certificate of the site `firstHost`:
   * copied here (rejects when that fails), then listed for full re-reads and
   * announced to the others — or, when Redis went away just then, announced
   * after the reconnection.
   */
  async stored(firstHost: string): Promise<void> {
    await this.pull(firstHost);
    await this.#announce(firstHost);
  }

  async #announce(firstHost: string): Promise<void> {
    try {
      await this.link.redis.sadd(this.#index, firstHost);
      await this.link.publish(channel, firstHost);
      this.#unannounced.delete(firstHost);
    } catch (err) {
      this.#unannounced.add(firstHost);
      this.log.warn({ event: 'acme_certificate_unannounced', site: firstHost, error: (err as Error).message }, `the new certificate of ${firstHost} could not be announced to the cluster (${(err as Error).message}); announced again once Redis is back`);
    }
  }

  /**
   * Follows the cluster: `changed` gets the first hosts whose files were
   * rewritten, after an announcement, after the re-read that follows the
   * subscription, or after the one that follows an outage (when this instance also announces what it could not before).
   * Failures are logged; the files keep
   * serving as they are. Returns the function that stops following.
   */
  async follow(changed: (hosts: string[]) => void): Promise<() => void> {
    const report = (hosts: string[]) => {
      if (hosts.length === 0) return;
      this.log.info({ event: 'acme_certificates_synced', sites: hosts }, `ACME certificates of ${hosts.join(', ')} taken from the cluster`);
      changed(hosts);
    };
    const failed = (err: Error) => this.log.error({ event: 'acme_certificates_sync_failed', error: err.message }, `copying ACME certificates from the cluster failed (${err.message}); the current ones keep serving, and the next announcement or reconnection tries again`);
    const unsubscribe = await this.link.subscribe(channel, (host) => void this.pull(host).then((wrote) => report(wrote ? [host] : []), failed));
    const unlink = this.link.onLink((up) => {
      if (!up) return;
      void this.pullAll().then(report, failed);
      for (const host of [...this.#unannounced]) void this.#announce(host);
    });
    // what was announced before the subscription
    await this.pullAll().then(report, failed);
    return () => {
      unsubscribe();
      unlink();
    };
  }
}
