import { X509Certificate } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import type { Config } from '../config/index.js';
import { pemBlocks, type CertificatePair } from '../pki/index.js';
import type { Logger, Metrics } from '../observe/index.js';
import { localAnswers, type AnswerSharing, type Obtained } from '../state/index.js';
import { maxAgeWithoutNextUpdateMs, rfc4514, OcspError, ocspResponderOf, queryOcsp, verifyOcspResponse, type FetchLimits, type OcspAnswer } from '../trust/index.js';

/** What `OCSPRequest` listeners are handed to answer with: a DER OCSPResponse to staple, or nothing. */
export type OcspCallback = (err: Error | null, response?: Buffer) => void;

export interface OcspStaplerOptions {
  readonly log: Logger;
  readonly metrics: Metrics;
  /** Where responses come from: the responder (default), or first the cluster's copies, verified here. */
  readonly answers?: AnswerSharing;
}

// The refresh schedule (docs/ocsp-stapling.md). A response is fetched when a certificate starts
// being served and again halfway through its validity (thisUpdate → nextUpdate), as Caddy does:
// a responder outage shorter than half the window goes unnoticed by clients.
const minRefreshMs = 30_000;
const maxRefreshMs = 12 * 3_600_000;
/** Without nextUpdate the responder has newer information at any time (RFC 5019 §2.2.4). */
const noNextUpdateRefreshMs = maxAgeWithoutNextUpdateMs / 2;
/** Retries after a failure: 30 s, 1, 2, 4, 8 min, then every 10 min, each up to 10 % later so that instances spread out. */
const firstRetryMs = 30_000;
const maxRetryMs = 10 * 60_000;
/** setTimeout fires at once beyond this; longer waits are taken in steps. */
const maxTimerMs = 2 ** 31 - 1;
const limits: FetchLimits = { timeoutMs: 10_000, maxBytes: 64 * 1024 };

const tlsFeatureOid = '1.3.6.1.5.5.7.1.24';
/** TLS extension numbers in a TLS Feature extension (RFC 7633) that require a stapled status: status_request, status_request_v2. */
const statusRequestFeatures = new Set([5, 17]);

type SkipReason = 'no_responder' | 'issuer_not_in_chain' | 'several_certificates';

interface Tracked {
  readonly key: string;
  readonly site: string;
  /** Metric label: the first 16 hex digits of the leaf's SHA-256 fingerprint (bounded: one per configured certificate). */
  readonly certificate: string;
  readonly subject: string;
  readonly leaf: X509Certificate;
  readonly mustStaple: boolean;
  /** What this entry does; an entry whose plan changes on reload is replaced. */
  readonly plan: { readonly kind: 'staple'; readonly url: string; readonly issuer: X509Certificate } | { readonly kind: 'skip'; readonly reason: SkipReason };
  readonly planKey: string;
  /** The latest verified 'good' answer, served until it expires; null when there is none to serve. */
  staple: OcspAnswer | null;
  /** When the latest answer (of any status) was obtained, ms since the epoch: a cluster's copy stored before then is no newer. */
  obtainedAt: number;
  /** The moment `staple` stops being served (ms since the epoch). */
  stapleUntil: number;
  failures: number;
  timer: NodeJS.Timeout | null;
  expiryTimer: NodeJS.Timeout | null;
  stopped: boolean;
}

/** True when the certificate carries the TLS Feature extension asking for status_request ("must-staple", RFC 7633). */
export function requiresStapling(cert: X509Certificate): boolean {
  let ext: pkijs.Extension | undefined;
  try {
    ext = pkijs.Certificate.fromBER(cert.raw).extensions?.find((e) => e.extnID === tlsFeatureOid);
  } catch {
    return false; // Node read it, pkijs cannot: no extension we can see
  }
  if (!ext) return false;
  try {
    const parsed = asn1js.fromBER(ext.extnValue.valueBlock.valueHexView);
    if (!(parsed.result instanceof asn1js.Sequence)) return true;
    return parsed.result.valueBlock.value.some((v) => v instanceof asn1js.Integer && statusRequestFeatures.has(v.valueBlock.valueDec));
  } catch {
    return true; // present but unreadable: assume the strict meaning, which at worst logs more
  }
}

function fingerprintLabel(cert: X509Certificate): string {
  return cert.fingerprint256.replace(/:/g, '').toLowerCase().slice(0, 16);
}


function planFor(pair: CertificatePair, siteCertificates: number): Tracked['plan'] {
  const url = ocspResponderOf(pair.leaf);
  if (!url) return { kind: 'skip', reason: 'no_responder' };
  // Node hands the OCSPRequest listener one certificate of the context (the last one loaded), chosen
  // before OpenSSL picks the one it sends; with ECDSA and RSA side by side a staple could go out
  // with the other certificate, which clients reject. So such sites staple nothing.
  if (siteCertificates > 1) return { kind: 'skip', reason: 'several_certificates' };
  const second = pemBlocks(pair.chainPem, pair.certFile).filter((b) => b.label === 'CERTIFICATE')[1];
  const issuer = second ? new X509Certificate(second.pem) : null;
  if (!issuer || !pair.leaf.checkIssued(issuer)) return { kind: 'skip', reason: 'issuer_not_in_chain' };
  return { kind: 'staple', url, issuer };
}

const skipMessages: Record<SkipReason, string> = {
  no_responder: 'the certificate names no OCSP responder (authority information access)',
  issuer_not_in_chain: 'the certificate file does not hold its issuer after the leaf, which an OCSP request needs; append the intermediate to the certificate file',
  several_certificates: 'the site serves several certificates, and Node cannot tell which one a handshake will use when it asks for the staple',
};

/**
 * OCSP stapling of our server certificates: for each certificate served
 * whose leaf names an OCSP responder and whose issuer follows it in the
 * chain, fetches and verifies a response, keeps the latest good one, and
 * hands it to handshakes that ask (`respond`, the site servers'
 * 'OCSPRequest' listener). Lifecycle: create → apply(config) (at start and on
 * every reload) → stop. Failures never throw: the previous good response keeps
 * being stapled until it expires, retries back off, and everything is logged
 * and counted. A 'revoked' answer is never stapled. Not for concurrent use
 * from several threads; all methods are synchronous and safe to call in any order.
 */
export class OcspStapler {
  readonly #log: Logger;
  readonly #metrics: Metrics;
  readonly #answers: AnswerSharing;
  /** By `${site id} ${leaf fingerprint}`. */
  readonly #tracked = new Map<string, Tracked>();
  /** Per site, the entries that may staple: looked up on every handshake that asks. */
  #bySite = new Map<string, readonly Tracked[]>();
  #stopped = false;

  constructor(options: OcspStaplerOptions) {
    this.#log = options.log;
    this.#metrics = options.metrics;
    this.#answers = options.answers ?? localAnswers;
  }

  /** Tracks the certificates of `config`: new ones are fetched at once, kept ones keep their staple and schedule, removed ones are forgotten. */
  apply(config: Config): void {
    if (this.#stopped) return;
    const seen = new Set<string>();
    for (const site of config.sites) {
      for (const pair of site.certificates) {
        const key = `${site.id} ${pair.leaf.fingerprint256}`;
        seen.add(key);
        const plan = planFor(pair, site.certificates.length);
        const planKey = plan.kind === 'staple' ? `staple ${plan.url} ${plan.issuer.fingerprint256}` : `skip ${plan.reason}`;
        const existing = this.#tracked.get(key);
        if (existing?.planKey === planKey) continue;
        if (existing) this.#forget(existing);
        this.#track(key, site.id, pair.leaf, plan, planKey);
      }
    }
    for (const [key, t] of this.#tracked) if (!seen.has(key)) this.#forget(t);
    const bySite = new Map<string, Tracked[]>();
    for (const t of this.#tracked.values()) {
      if (t.plan.kind !== 'staple') continue;
      const list = bySite.get(t.site) ?? [];
      list.push(t);
      bySite.set(t.site, list);
    }
    this.#bySite = bySite;
  }

  /** The DER response to staple for `certificate` (DER) on `siteId`, or null: none fetched yet, expired, or the certificate is not stapled. */
  stapleFor(siteId: string, certificate: Buffer, now = Date.now()): Buffer | null {
    const list = this.#bySite.get(siteId);
    if (!list) return null;
    for (const t of list) {
      if (t.leaf.raw.equals(certificate)) return t.staple && now < t.stapleUntil ? t.staple.der : null;
    }
    return null;
  }

  /** The 'OCSPRequest' listener's work: answers with the staple, or without one. Never fails the handshake. */
  respond(siteId: string, certificate: Buffer, callback: OcspCallback): void {
    const der = this.stapleFor(siteId, certificate);
    if (der) callback(null, der);
    else callback(null);
  }

  /** Stops every timer; answers still in flight are dropped. Safe to call twice. */
  stop(): void {
    this.#stopped = true;
    for (const t of this.#tracked.values()) this.#forget(t);
    this.#bySite = new Map();
  }

  #track(key: string, site: string, leaf: X509Certificate, plan: Tracked['plan'], planKey: string): void {
    const t: Tracked = {
      key,
      site,
      certificate: fingerprintLabel(leaf),
      subject: rfc4514(leaf.subject),
      leaf,
      mustStaple: requiresStapling(leaf),
      plan,
      planKey,
      staple: null,
      obtainedAt: 0,
      stapleUntil: 0,
      failures: 0,
      timer: null,
      expiryTimer: null,
      stopped: false,
    };
    this.#tracked.set(key, t);
    const fields = { site, certificate: t.certificate, subject: t.subject };
    if (plan.kind === 'skip') {
      const level = plan.reason === 'no_responder' ? 'debug' : plan.reason === 'issuer_not_in_chain' ? 'warn' : 'info';
      this.#log[level]({ event: 'ocsp_staple_skipped', ...fields, reason: plan.reason }, `OCSP stapling off for ${t.subject}: ${skipMessages[plan.reason]}`);
      if (t.mustStaple) this.#mustStapleUnavailable(t, skipMessages[plan.reason]);
      return;
    }
    this.#publish(t);
    this.#run(t);
  }

  #forget(t: Tracked): void {
    t.stopped = true;
    if (t.timer) clearTimeout(t.timer);
    if (t.expiryTimer) clearTimeout(t.expiryTimer);
    t.timer = t.expiryTimer = null;
    if (this.#tracked.get(t.key) === t) this.#tracked.delete(t.key);
    if (t.plan.kind === 'staple') this.#metrics.forgetOcspStaple(t.site, t.certificate);
  }

  #publish(t: Tracked): void {
    const fresh = t.staple !== null && Date.now() < t.stapleUntil;
    this.#metrics.ocspStaple(t.site, t.certificate, fresh, fresh ? (t.staple?.nextUpdate ?? null) : null);
  }

  #fields(t: Tracked): Record<string, unknown> {
    return { site: t.site, certificate: t.certificate, subject: t.subject, responder: t.plan.kind === 'staple' ? t.plan.url : null };
  }

  #mustStapleUnavailable(t: Tracked, why: string): void {
    this.#log.error(
      { event: 'ocsp_must_staple_unavailable', ...this.#fields(t), detail: why },
      `certificate ${t.subject} requires a stapled OCSP response (TLS Feature "must-staple") and none is available: clients that honour it refuse the connection (${why})`,
    );
  }

  async #refresh(t: Tracked): Promise<void> {
    if (t.plan.kind !== 'staple' || t.stopped) return;
    t.timer = null;
    const started = performance.now();
    let answer: OcspAnswer;
    let from: Obtained<OcspAnswer>['from'];
    try {
      ({ answer, from } = await this.#obtain(t, t.plan.url, t.plan.issuer));
    } catch (err) {
      const e = err instanceof OcspError ? err : new OcspError('malformed', (err as Error).message, { cause: err });
      this.#metrics.ocspQueried('staple', e.code, (performance.now() - started) / 1000);
      if (!t.stopped) this.#failed(t, e.code, e.message);
      return;
    }
    t.obtainedAt = Date.now();
    if (from === 'fetched') this.#metrics.ocspQueried('staple', answer.status, (performance.now() - started) / 1000);
    if (t.stopped) return;
    // an answer older than the one held (a responder's stale cache, or a replay) never replaces it
    if (t.staple && answer.thisUpdate < t.staple.thisUpdate) this.#failed(t, 'stale', `OCSP responder ${t.plan.url} answered with thisUpdate ${answer.thisUpdate.toISOString()}, older than the response held`);
    else if (answer.status === 'good') this.#updated(t, answer, from);
    else if (answer.status === 'revoked') this.#revoked(t, answer);
    // 'unknown': the responder does not know our certificate; a previous good answer stays valid until it expires
    else this.#failed(t, 'unknown', `OCSP responder ${t.plan.url} answered unknown for ${t.subject} (serial ${t.leaf.serialNumber})`);
  }

  /** The responder's answer, or in a cluster the copy another instance fetched once it verifies here. */
  #obtain(t: Tracked, url: string, issuer: X509Certificate): Promise<Obtained<OcspAnswer>> {
    return this.#answers.obtain({
      kind: 'staple',
      subject: `${url} ${issuer.fingerprint256} ${t.leaf.fingerprint256}`,
      source: url,
      storedAfter: t.obtainedAt,
      verify: (bytes) => verifyOcspResponse(bytes, t.leaf, issuer),
      fetch: async () => {
        const answer = await queryOcsp(t.leaf, issuer, url, limits);
        return { answer, bytes: answer.der };
      },
      shareUntil: (answer) => (answer.nextUpdate ?? new Date(answer.thisUpdate.getTime() + maxAgeWithoutNextUpdateMs)).getTime(),
    });
  }

  #updated(t: Tracked, answer: OcspAnswer, from: Obtained<OcspAnswer>['from']): void {
    const now = Date.now();
    t.staple = answer;
    t.stapleUntil = answer.nextUpdate ? answer.nextUpdate.getTime() : answer.thisUpdate.getTime() + maxAgeWithoutNextUpdateMs;
    t.failures = 0;
    const delay = answer.nextUpdate
      ? Math.min(maxRefreshMs, Math.max(minRefreshMs, answer.thisUpdate.getTime() + (answer.nextUpdate.getTime() - answer.thisUpdate.getTime()) / 2 - now))
      : noNextUpdateRefreshMs;
    this.#schedule(t, delay);
    this.#watchExpiry(t);
    this.#publish(t);
    this.#log.info(
      {
        event: 'ocsp_staple_updated',
        ...this.#fields(t),
        thisUpdate: answer.thisUpdate.toISOString(),
        nextUpdate: answer.nextUpdate?.toISOString() ?? null,
        refreshAt: new Date(now + delay).toISOString(),
        ...(from === 'shared' ? { from: 'cluster' } : {}),
      },
      `OCSP response for ${t.subject} stapled until ${new Date(t.stapleUntil).toISOString()}`,
    );
  }

  #revoked(t: Tracked, answer: OcspAnswer): void {
    // never staple it, and stop stapling an older 'good': the newer answer supersedes it
    t.staple = null;
    t.stapleUntil = 0;
    t.failures = 0;
    if (t.expiryTimer) clearTimeout(t.expiryTimer);
    t.expiryTimer = null;
    this.#publish(t);
    this.#log.error(
      {
        event: 'ocsp_certificate_revoked',
        ...this.#fields(t),
        revokedAt: answer.revokedAt?.toISOString() ?? null,
        revocationReason: answer.revocationReason,
        thisUpdate: answer.thisUpdate.toISOString(),
      },
      `the OCSP responder says our certificate ${t.subject} (serial ${t.leaf.serialNumber}) is REVOKED${answer.revocationReason ? ` (${answer.revocationReason})` : ''}: clients will refuse it; replace the certificate`,
    );
    if (t.mustStaple) this.#mustStapleUnavailable(t, 'the certificate is revoked');
    // asked again on the usual schedule, so that a responder's mistake heals
    this.#schedule(t, answer.nextUpdate ? Math.min(maxRefreshMs, Math.max(minRefreshMs, (answer.nextUpdate.getTime() - Date.now()) / 2)) : noNextUpdateRefreshMs);
  }

  #failed(t: Tracked, reason: string, detail: string): void {
    t.failures++;
    const delay = Math.min(maxRetryMs, firstRetryMs * 2 ** Math.min(t.failures - 1, 10)) * (1 + Math.random() * 0.1);
    this.#schedule(t, delay);
    const serving = t.staple !== null && Date.now() < t.stapleUntil;
    this.#log[serving ? 'warn' : 'error'](
      {
        event: 'ocsp_staple_failed',
        ...this.#fields(t),
        reason,
        detail,
        failures: t.failures,
        retryAt: new Date(Date.now() + delay).toISOString(),
        stapling: serving ? `previous response until ${new Date(t.stapleUntil).toISOString()}` : 'nothing',
      },
      `no OCSP response for ${t.subject}: ${detail}`,
    );
    if (!serving && t.mustStaple) this.#mustStapleUnavailable(t, detail);
  }

  /** When the staple expires with no replacement, the gauge drops and the event is logged (serving already stops by `stapleUntil`). */
  #watchExpiry(t: Tracked): void {
    if (t.expiryTimer) clearTimeout(t.expiryTimer);
    const wait = t.stapleUntil - Date.now();
    t.expiryTimer = setTimeout(() => {
      t.expiryTimer = null;
      if (t.stopped || t.staple === null) return;
      if (Date.now() < t.stapleUntil) return this.#watchExpiry(t);
      t.staple = null;
      this.#publish(t);
      this.#log.error({ event: 'ocsp_staple_expired', ...this.#fields(t) }, `the stapled OCSP response for ${t.subject} expired with no replacement; stapling nothing`);
      if (t.mustStaple) this.#mustStapleUnavailable(t, 'the last OCSP response expired');
    }, Math.max(0, Math.min(maxTimerMs, wait))).unref();
  }

  #schedule(t: Tracked, delayMs: number): void {
    if (t.timer) clearTimeout(t.timer);
    t.timer = setTimeout(() => this.#run(t), Math.min(maxTimerMs, delayMs)).unref();
  }

  /** A refresh from a timer: whatever goes wrong is logged, never an unhandled rejection. */
  #run(t: Tracked): void {
    this.#refresh(t).catch((err: unknown) => {
      this.#log.error({ event: 'ocsp_staple_failed', ...this.#fields(t), reason: 'internal', detail: (err as Error).message }, 'OCSP stapling failed unexpectedly');
      if (!t.stopped) this.#schedule(t, maxRetryMs);
    });
  }
}
