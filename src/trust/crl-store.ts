import type { X509Certificate } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import type { Logger, Metrics } from '../observe/index.js';
import { localAnswers, type AnswerSharing } from '../state/index.js';
import { CrlError, crlCovers, issuerKeyOf, normaliseSerial, parseCrl, verifyCrl, type VerifiedCrl } from './crl.js';
import { FetchError, fetchBounded } from './fetch-bounded.js';

/** A configured CRL: a file (re-read when it changes) or an http(s) URL (refreshed before nextUpdate). */
export interface CrlSourceSpec {
  readonly kind: 'file' | 'url';
  /** Absolute path or URL; also the source's name in logs and metrics. */
  readonly location: string;
  /** The CAs that may have signed it (the clientAuth.ca of every site that lists it). */
  readonly issuers: readonly X509Certificate[];
}

/** What the CRLs at hand say about one certificate. */
export type CrlVerdict =
  | { readonly verdict: 'revoked'; readonly source: string }
  | { readonly verdict: 'good'; readonly source: string }
  /** No fresh CRL of the certificate's issuer; `pending` settles when a source still loading has loaded (or failed). */
  | { readonly verdict: 'none'; readonly problems: readonly string[]; readonly pending: Promise<void> | null };

interface Source {
  readonly kind: 'file' | 'url';
  readonly location: string;
  issuers: readonly X509Certificate[];
  crl: VerifiedCrl | null;
  /** When `crl` was obtained (ms since the epoch): a cluster's copy stored before then is no newer. */
  obtainedAt: number;
  problem: string | null;
  /** Set until the first load has finished, successfully or not. */
  firstLoad: Promise<void> | null;
  failures: number;
  /** The load running now; loads of one source never overlap. */
  loading: Promise<void> | null;
  /** A load asked for while one ran: run once more when it ends (`ifChanged`: only if the file changed again). */
  queued: LoadMode | null;
  timer: NodeJS.Timeout | null;
  watcher: FSWatcher | null;
  fileStamp: string;
  stopped: boolean;
}

/** `always` loads; `ifChanged` loads a file only when its inode, size or mtime changed since the last load. */
type LoadMode = 'always' | 'ifChanged';

const fetchLimits = { timeoutMs: 10_000, maxBytes: 20 * 1024 * 1024 };
const filePollMs = 30_000;
const minRefreshMs = 30_000;
const maxRefreshMs = 24 * 3_600_000;
/** Retries after failures: 5 s, 10 s, 20 s … up to 5 min (docs/revocation.md). */
const firstRetryMs = 5_000;
const maxBackoffMs = 5 * 60_000;
/** Distribution points are named by certificates, so they are bounded; the least recently added go first. */
const maxDistributionPoints = 256;

/** A CRL file's bytes; a file that cannot be read is `unreadable`, with the errno in the message (never an errno as a reason or metric label). */
async function readCrlFile(path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    throw new CrlError('unreadable', `${path} cannot be read (${(err as Error).message}); put the CRL file back, or make it readable by this process`);
  }
}

function refreshDelay(crl: VerifiedCrl, now: number): number {
  if (!crl.nextUpdate) return 3_600_000;
  // at three quarters of the CRL's window, so a failed fetch has time to be retried before it expires
  const at = crl.thisUpdate.getTime() + 0.75 * (crl.nextUpdate.getTime() - crl.thisUpdate.getTime());
  return Math.min(maxRefreshMs, Math.max(minRefreshMs, at - now));
}

/**
 * The CRLs of every site and of the distribution points of verified client
 * certificates, kept loaded and fresh. A CRL that fails verification is
 * ignored and reported, and the last good one of that source keeps being
 * used. Lookups are synchronous; only a source's first load is waited for.
 */
export class CrlStore {
  readonly #sources = new Map<string, Source>();
  readonly #log: Logger;
  readonly #metrics: Metrics;
  readonly #answers: AnswerSharing;

  /** `answers`: where URL sources come from (the origin, or first the cluster's verified copies). */
  constructor(log: Logger, metrics: Metrics, answers: AnswerSharing = localAnswers) {
    this.#log = log;
    this.#metrics = metrics;
    this.#answers = answers;
  }

  /** Brings the configured sources in line with a (re)loaded config; distribution points stay. */
  configure(specs: readonly CrlSourceSpec[]): void {
    const wanted = new Set(specs.map((s) => s.location));
    for (const [key, source] of this.#sources) {
      if (!key.startsWith('cdp ') && !wanted.has(key)) this.#remove(key, source);
    }
    for (const spec of specs) {
      const existing = this.#sources.get(spec.location);
      if (existing) {
        // a reload parses the CA files again: compare what they hold, not the objects
        const changed = existing.issuers.length !== spec.issuers.length || existing.issuers.some((c, i) => c.fingerprint256 !== spec.issuers[i]?.fingerprint256);
        existing.issuers = spec.issuers;
        if (changed) void this.#load(existing, 'always');
        continue;
      }
      this.#add(spec.location, spec.kind, spec.location, spec.issuers);
    }
  }

  /** The key under which a certificate's distribution point is kept, loading it on first use. */
  distributionPoint(url: string, issuer: X509Certificate): string {
    const key = `cdp ${url} ${issuer.fingerprint256}`;
    if (!this.#sources.has(key)) {
      const cdps = [...this.#sources.keys()].filter((k) => k.startsWith('cdp '));
      if (cdps.length >= maxDistributionPoints) this.#remove(cdps[0] as string, this.#sources.get(cdps[0] as string) as Source);
      this.#add(key, 'url', url, [issuer]);
    }
    return key;
  }

  /**
   * What the named sources say about `cert`, issued by `issuer`, with
   * distribution points `points`: revoked if any CRL of that issuer covering
   * it lists it (an expired CRL still proves a revocation), good if a fresh
   * one does not, otherwise none.
   */
  lookup(cert: X509Certificate, issuer: X509Certificate, points: readonly string[], keys: readonly string[], now = Date.now()): CrlVerdict {
    const serial = normaliseSerial(cert.serialNumber);
    const issuerKey = issuerKeyOf(issuer);
    let good: string | null = null;
    const problems: string[] = [];
    const pending: Promise<void>[] = [];
    for (const key of keys) {
      const source = this.#sources.get(key);
      if (!source) continue;
      const crl = source.crl;
      if (!crl) {
        if (source.firstLoad) pending.push(source.firstLoad);
        else problems.push(`${source.location}: ${source.problem ?? 'not loaded'}`);
        continue;
      }
      if (crl.issuerKey !== issuerKey || !crlCovers(crl.scope, cert, points)) continue;
      if (crl.revoked.has(serial)) return { verdict: 'revoked', source: source.location };
      if (crl.nextUpdate === null || crl.nextUpdate.getTime() > now) good ??= source.location;
      else problems.push(`${source.location}: expired at ${crl.nextUpdate.toISOString()} (nextUpdate)${source.problem ? `; ${source.problem}` : ''}`);
    }
    if (good) return { verdict: 'good', source: good };
    return { verdict: 'none', problems, pending: pending.length ? Promise.all(pending).then(() => undefined) : null };
  }

  stop(): void {
    for (const [key, source] of this.#sources) this.#remove(key, source);
  }

  #add(key: string, kind: 'file' | 'url', location: string, issuers: readonly X509Certificate[]): void {
    const source: Source = { kind, location, issuers, crl: null, obtainedAt: 0, problem: null, firstLoad: null, failures: 0, loading: null, queued: null, timer: null, watcher: null, fileStamp: '', stopped: false };
    this.#sources.set(key, source);
    source.firstLoad = this.#load(source, 'always').finally(() => (source.firstLoad = null));
    if (kind === 'file') this.#watch(source);
  }

  #remove(key: string, source: Source): void {
    source.stopped = true;
    if (source.timer) clearTimeout(source.timer);
    source.watcher?.close();
    this.#sources.delete(key);
    this.#metrics.forgetCrl(source.location);
  }

  /** Watches the folder (an editor or `mv` replaces the file, which a watch on the file itself would miss) and polls as a backstop. */
  #watch(source: Source): void {
    const name = basename(source.location);
    const changed = () => void this.#load(source, 'ifChanged');
    try {
      source.watcher = watch(dirname(source.location), { persistent: false }, (_event, file) => {
        if (file === null || file === name) changed();
      });
      source.watcher.on('error', () => source.watcher?.close());
    } catch {
      // a folder that cannot be watched is still polled
    }
    const poll = () => {
      if (source.stopped) return;
      changed();
      source.timer = setTimeout(poll, filePollMs).unref();
    };
    source.timer = setTimeout(poll, filePollMs).unref();
  }

  async #stampOf(path: string): Promise<string> {
    try {
      const s = await stat(path);
      return `${s.ino}/${s.size}/${s.mtimeMs}`;
    } catch {
      return 'missing';
    }
  }

  /**
   * Loads a source, one load at a time: an editor's save or a write in place
   * fires several watch events, and overlapping loads would each report and
   * count the same file. A load asked for while one runs is run once after it
   * (for a file: only if it changed again, say the write finished after the
   * running load read it). Settles when no load of the source is left to run.
   */
  #load(source: Source, mode: LoadMode): Promise<void> {
    if (source.loading) {
      if (source.queued !== 'always') source.queued = mode;
      return source.loading;
    }
    source.loading = (async () => {
      for (let next: LoadMode | null = mode; next !== null && !source.stopped; ) {
        if (next === 'always' || source.kind !== 'file' || (await this.#stampOf(source.location)) !== source.fileStamp) await this.#loadOnce(source);
        next = source.queued;
        source.queued = null;
      }
    })().finally(() => (source.loading = null));
    return source.loading;
  }

  async #loadOnce(source: Source): Promise<void> {
    let outcome = 'ok';
    try {
      let crl: VerifiedCrl;
      let shared = false;
      if (source.kind === 'file') {
        source.fileStamp = await this.#stampOf(source.location);
        crl = await this.#verified(source, await readCrlFile(source.location));
      } else {
        const obtained = await this.#fetchShared(source);
        crl = obtained.answer;
        shared = obtained.from === 'shared';
      }
      if (source.stopped) return;
      source.crl = crl;
      source.obtainedAt = Date.now();
      source.problem = null;
      source.failures = 0;
      this.#metrics.crlLoaded(source.location, crl.thisUpdate, crl.nextUpdate);
      this.#log.info(
        { event: 'crl_loaded', source: source.location, thisUpdate: crl.thisUpdate.toISOString(), nextUpdate: crl.nextUpdate?.toISOString() ?? null, revoked: crl.revoked.size, ...(shared ? { from: 'cluster' } : {}) },
        `CRL loaded from ${source.location}${shared ? " (the cluster's copy, verified here)" : ''}`,
      );
    } catch (err) {
      if (source.stopped) return;
      // only the documented reasons become log fields and metric labels
      outcome = err instanceof CrlError || err instanceof FetchError ? err.code : 'error';
      source.problem = (err as Error).message;
      source.failures++;
      this.#log.warn(
        { event: 'crl_rejected', source: source.location, reason: outcome, detail: source.problem, keepsUsing: source.crl ? 'the previous CRL' : 'none' },
        `CRL from ${source.location} not used: ${source.problem}`,
      );
    } finally {
      if (!source.stopped) this.#metrics.crlLoads.inc({ result: outcome });
    }
    if (source.kind === 'url') this.#schedule(source);
  }

  /** Signature and issuer checked against the source's CAs; a CRL older than the one in use is refused (a rollback). */
  async #verified(source: Source, bytes: Buffer): Promise<VerifiedCrl> {
    const crl = await verifyCrl(parseCrl(bytes, source.location), source.issuers, source.location);
    if (source.crl && crl.thisUpdate < source.crl.thisUpdate) {
      throw new CrlError('not_yet_valid', `${source.location} is older (thisUpdate ${crl.thisUpdate.toISOString()}) than the CRL in use (${source.crl.thisUpdate.toISOString()}); a rollback is refused`);
    }
    return crl;
  }

  /**
   * A URL source's CRL: the cluster's copy when one newer than ours verifies
   * here, else fetched (and shared until its nextUpdate). A copy must also be
   * current: an expired CRL still proves revocations, but the origin may have a newer one.
   */
  #fetchShared(source: Source) {
    return this.#answers.obtain({
      kind: 'crl',
      subject: source.location,
      source: source.location,
      storedAfter: source.crl ? source.obtainedAt : 0,
      verify: async (bytes) => {
        const crl = await this.#verified(source, bytes);
        if (crl.nextUpdate && crl.nextUpdate.getTime() <= Date.now()) throw Object.assign(new Error(`${source.location}: the copy expired at ${crl.nextUpdate.toISOString()} (nextUpdate)`), { code: 'expired' });
        return crl;
      },
      fetch: async () => {
        const bytes = await fetchBounded(source.location, fetchLimits, { accept: 'application/pkix-crl' });
        return { answer: await this.#verified(source, bytes), bytes };
      },
      shareUntil: (crl) => (crl.nextUpdate ? crl.nextUpdate.getTime() : Date.now() + 3_600_000),
    });
  }

  #schedule(source: Source): void {
    if (source.timer) clearTimeout(source.timer);
    const now = Date.now();
    const fresh = source.crl && (source.crl.nextUpdate === null || source.crl.nextUpdate.getTime() > now);
    // the first retry after one failure comes after firstRetryMs, then the wait doubles
    const delay = source.failures === 0 && fresh ? refreshDelay(source.crl as VerifiedCrl, now) : Math.min(maxBackoffMs, firstRetryMs * 2 ** Math.min(Math.max(source.failures - 1, 0), 10));
    source.timer = setTimeout(() => void this.#load(source, 'always'), delay).unref();
  }
}
