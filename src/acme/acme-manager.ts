import { X509Certificate, randomInt } from 'node:crypto';
import type { AcmeSource, CertificatePair, Config } from '../config/index.js';
import { acmeCertificateKeys, type LockLease, type StateBackend } from '../state/index.js';
import type { Logger, SupervisorMetrics } from '../observe/index.js';
import { withCa, type AcmeProblem } from './acme-http.js';
import type { AcmeChallengeSet, ChallengeBoard } from './challenges.js';
import { renewalTime, retryDelay, suggestedWindow, timeInWindow } from './renewal.js';
import { freshStoredCertificate, type StoredCertificate } from './stored-certificate.js';

export interface AcmeManagerOptions {
  readonly state: StateBackend;
  readonly board: ChallengeBoard;
  readonly log: Logger;
  readonly metrics: SupervisorMetrics;
  /** Called once a new certificate is stored: the instance reloads, which checks it before the swap. Resolves with the outcome. */
  readonly issued: (site: string) => Promise<{ readonly ok: boolean; readonly message: string }>;
  /**
   * Whether other instances store certificates in the same state (a cluster
   * on Redis): an order that waited for the per-certificate lock first looks
   * for a fresh certificate another instance stored meanwhile, and takes it
   * instead of ordering again. Off (the memory backend): this instance is
   * the only writer, so a stored certificate it does not serve is one the
   * config refused.
   */
  readonly shared?: boolean;
}

/** Timers never wait longer than a day: the plan (and the CA's renewal window) is looked at again then. */
const maxWaitMs = 86_400_000;
/** An order that has not finished by then is given up (and retried): it holds the per-domain lock. */
const orderDeadlineMs = 600_000;
const random = () => randomInt(1_000_000) / 1_000_000;
/** The order code and acme-client load with the first order (see acme-http.ts): an instance without `acme` sites never loads them. */
const ordering = () => import('./order.js');

interface Job {
  source: AcmeSource;
  /** The certificate the instance serves for the site, or null while none is usable. */
  served: CertificatePair | null;
  /** What identifies the settings and the served certificate: a change re-plans at once. */
  signature: string;
  timer: NodeJS.Timeout | null;
  /** Consecutive failed orders. */
  failures: number;
  running: boolean;
  /** The fingerprint of a stored certificate the reload refused: ordered anew, never taken from the state again. */
  refused: string | null;
}

/** What one turn under the per-certificate lock came to. */
type Outcome =
  | { readonly kind: 'issued'; readonly pair: StoredCertificate }
  /** Another instance stored a fresh certificate while this one waited for the lock: nothing ordered. */
  | { readonly kind: 'taken'; readonly pair: StoredCertificate }
  | { readonly kind: 'failed'; readonly problem: AcmeProblem };

/**
 * Keeps the certificate of every `acme` site: orders one at once while the
 * site serves none, renews at a third of the lifetime left (or in the CA's
 * ARI window), retries failures with backoff while the current certificate
 * keeps serving, and stores results through the state backend. One order per
 * certificate at a time: each runs under the per-domain lock, and stores its
 * result before releasing it, so instances sharing state never order the
 * same certificate together, and one that waited takes the other's result
 * (`shared`) instead of ordering again. Plans follow the
 * served config, so a stored certificate the config refused is ordered anew.
 */
export class AcmeManager {
  readonly #jobs = new Map<string, Job>();
  readonly #opts: AcmeManagerOptions;
  #stopped = false;

  constructor(opts: AcmeManagerOptions) {
    this.#opts = opts;
  }

  /** Follows the ACME sites of an accepted config: new ones are planned, changed ones (settings or served certificate) re-planned, removed ones dropped. */
  apply(config: Config): void {
    const wanted = new Map(config.sites.flatMap((s) => (s.acme ? [[s.id, { source: s.acme, served: s.certificates[0] ?? null }] as const] : [])));
    for (const [site, job] of this.#jobs) {
      if (wanted.has(site)) continue;
      if (job.timer) clearTimeout(job.timer);
      this.#jobs.delete(site);
      this.#opts.metrics.acmeNextRenewal.remove({ site });
    }
    for (const [site, { source, served }] of wanted) {
      const signature = JSON.stringify([source.directory, source.email, source.challenge, source.names, source.caPem, served?.leaf.fingerprint256 ?? null]);
      const job = this.#jobs.get(site);
      if (job && job.signature === signature) continue;
      const next: Job = job ?? { source, served, signature, timer: null, failures: 0, running: false, refused: null };
      Object.assign(next, { source, served, signature, failures: 0 });
      this.#jobs.set(site, next);
      // an order in flight re-plans when it ends
      if (!next.running) void this.#plan(site, next);
    }
  }

  /** The challenge answers in place now (for a worker that starts while an order runs). */
  challenges(): AcmeChallengeSet {
    return this.#opts.board.current();
  }

  stop(): void {
    this.#stopped = true;
    for (const job of this.#jobs.values()) if (job.timer) clearTimeout(job.timer);
  }

  /** Decides when to order next: at once without a served certificate, else at its renewal time. Never rejects. */
  async #plan(site: string, job: Job): Promise<void> {
    const served = job.served;
    if (!served) return this.#schedule(site, job, Date.now());
    const leaf = served.leaf;
    const window = await withCa(job.source.caPem, () => suggestedWindow(job.source.directory, served.chainPem));
    const suggested = window.ok ? window.value : null;
    const at = suggested ? timeInWindow(suggested, random(), Date.now()) : renewalTime(Date.parse(leaf.validFrom), Date.parse(leaf.validTo), random());
    const by = suggested ? 'the renewal window the CA suggests (ARI)' : 'a third of the lifetime left';
    this.#opts.log.info({ event: 'acme_renewal_scheduled', site, renewAt: new Date(at).toISOString(), notAfter: new Date(leaf.validTo).toISOString(), by }, `site ${site}: ACME renewal at ${new Date(at).toISOString()} (${by})`);
    this.#schedule(site, job, at);
  }

  #schedule(site: string, job: Job, at: number): void {
    if (this.#stopped || this.#jobs.get(site) !== job) return;
    if (job.timer) clearTimeout(job.timer);
    this.#opts.metrics.acmeNextRenewal.set({ site }, Math.round(at / 1000));
    const wait = Math.max(0, at - Date.now());
    job.timer = setTimeout(() => (wait > maxWaitMs ? void this.#plan(site, job) : void this.#order(site, job)), Math.min(wait, maxWaitMs));
    job.timer.unref();
  }

  /** One attempt; whatever goes wrong (the CA, storage, the reload's checks) is logged, counted and retried with backoff. Never rejects. */
  async #order(site: string, job: Job): Promise<void> {
    if (job.running || this.#stopped) return;
    job.running = true;
    // what this instance served when the attempt began: a stored certificate other than it (and fresh) is another instance's
    const before = job.served?.leaf.fingerprint256 ?? null;
    let problem: AcmeProblem | null = null;
    try {
      const keys = acmeCertificateKeys(job.source.names[0] as string);
      const outcome = await this.#opts.state.withLock(`acme-order/${keys.cert}`, (lease) => this.#underLock(site, job, keys, before, lease));
      problem = outcome.kind === 'failed' ? outcome.problem : await this.#use(site, job, outcome);
    } catch (err) {
      problem = { type: 'storage', detail: `the certificate could not be stored: ${(err as Error).message}` };
    } finally {
      job.running = false;
    }
    if (problem) return this.#failed(site, job, problem);
    job.failures = 0;
    // the reload handed apply() the new certificate while the order still ran: plan from it now
    await this.#plan(site, job);
  }

  /** Holding the per-certificate lock: takes a fresh certificate another instance stored meanwhile, else orders one and stores it (fenced: a holder overtaken after its lock expired stores nothing). */
  async #underLock(site: string, job: Job, keys: { cert: string; key: string }, before: string | null, lease: LockLease): Promise<Outcome> {
    const { source } = job;
    const { state, log, metrics } = this.#opts;
    if (this.#opts.shared) {
      const stored = await freshStoredCertificate(state, keys, source.names, [before, job.refused]);
      if (stored) return { kind: 'taken', pair: stored };
    }
    log.info({ event: 'acme_order_started', site, names: source.names, challenge: source.challenge, directory: source.directory }, `site ${site}: ordering a certificate for ${source.names.join(', ')} (${source.challenge})`);
    metrics.acmeOrders.inc({ site, result: 'started', reason: '' });
    const outcome = await withCa(source.caPem, async () => withDeadline((await ordering()).orderCertificate(source, state, this.#opts.board), orderDeadlineMs));
    if (!outcome.ok) return { kind: 'failed', problem: outcome.problem };
    const { certPem, keyPem } = outcome.value;
    // the key first: a reader that sees the new certificate finds its key
    if (!(await lease.write(keys.key, keyPem, { secret: true })) || !(await lease.write(keys.cert, certPem))) {
      return { kind: 'failed', problem: { type: 'storage', detail: 'the order outlived its per-certificate lock (held past its expiry) and another holder took it; the certificate was not stored' } };
    }
    return { kind: 'issued', pair: { certPem, keyPem, leaf: new X509Certificate(certPem) } };
  }

  /** Puts a stored certificate in service (the reload checks it before the swap); returns the problem when it was refused. */
  async #use(site: string, job: Job, outcome: Outcome & { kind: 'issued' | 'taken' }): Promise<AcmeProblem | null> {
    const { log, metrics } = this.#opts;
    const { leaf } = outcome.pair;
    const notAfter = new Date(leaf.validTo).toISOString();
    if (outcome.kind === 'issued') {
      metrics.acmeOrders.inc({ site, result: 'succeeded', reason: '' });
      log.info({ event: 'acme_order_succeeded', site, serial: leaf.serialNumber, notAfter }, `site ${site}: certificate issued, valid until ${notAfter}`);
    } else {
      log.info({ event: 'acme_certificate_taken', site, serial: leaf.serialNumber, notAfter }, `site ${site}: another instance of the cluster stored a certificate valid until ${notAfter} while this one waited; using it, nothing ordered`);
      // the cluster's announcement may have put it in service already
      if (job.served?.leaf.fingerprint256 === leaf.fingerprint256) return null;
    }
    const reload = this.#stopped ? { ok: true, message: '' } : await this.#opts.issued(site);
    if (reload.ok) return null;
    job.refused = leaf.fingerprint256;
    return { type: 'refused_by_checks', detail: `the ${outcome.kind} certificate was not swapped in: ${reload.message}` };
  }

  #failed(site: string, job: Job, problem: AcmeProblem): void {
    job.failures++;
    const delay = retryDelay(job.failures, random());
    this.#opts.metrics.acmeOrders.inc({ site, result: 'failed', reason: problem.type });
    this.#opts.log.error(
      { event: 'acme_order_failed', site, problemType: problem.type, detail: problem.detail, attempt: job.failures, retryInMs: delay },
      `site ${site}: ACME order failed (${problem.type}: ${problem.detail}); retrying in ${Math.round(delay / 1000)} s, the current certificate (if any) keeps serving`,
    );
    this.#schedule(site, job, Date.now() + delay);
  }
}

function withDeadline<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error(`the order did not finish within ${ms / 60_000} minutes`), { code: 'ETIMEDOUT' })), ms);
  });
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}
