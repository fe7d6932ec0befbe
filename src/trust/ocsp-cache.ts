import type { X509Certificate } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Metrics } from '../observe/index.js';
import { localAnswers, type AnswerSharing } from '../state/index.js';
import { OcspError, queryOcsp, verifyOcspResponse, type OcspAnswer } from './ocsp.js';

/** What is known of one certificate's OCSP status: an answer, or why none could be had. */
export type OcspKnowledge = { readonly answer: OcspAnswer; readonly problem: null } | { readonly answer: null; readonly problem: string };

interface Entry {
  knowledge: OcspKnowledge | null;
  expiresAt: number;
  inflight: Promise<void> | null;
}

const limits = { timeoutMs: 5_000, maxBytes: 64 * 1024 };
/** Without nextUpdate the responder says newer information is always available (RFC 5019 §2.2.4): ask again soon. */
const noNextUpdateTtlMs = 5 * 60_000;
/** A failed query is not repeated for every connection: a down responder would be hammered. */
const failureTtlMs = 30_000;
const maxEntries = 10_000;

/**
 * OCSP answers for client certificates, kept until their nextUpdate (bounded
 * in number: the oldest go first), with one query in flight per certificate
 * however many connections present it.
 */
export class OcspCache {
  readonly #entries = new Map<string, Entry>();
  readonly #metrics: Metrics;
  readonly #answers: AnswerSharing;

  /** `answers`: where answers come from (the responder, or first the cluster's verified copies). */
  constructor(metrics: Metrics, answers: AnswerSharing = localAnswers) {
    this.#metrics = metrics;
    this.#answers = answers;
  }

  /** The current knowledge, or null when there is none (or it expired) and `fetch` must be awaited. */
  known(cert: X509Certificate, issuer: X509Certificate, now = Date.now()): OcspKnowledge | null {
    const entry = this.#entries.get(keyOf(cert, issuer));
    return entry?.knowledge && entry.expiresAt > now ? entry.knowledge : null;
  }

  /**
   * Asks the responder unless a query is already in flight; never rejects (a
   * failure becomes knowledge with a problem). In a cluster, another
   * instance's answer is taken first when it verifies here as a fresh one would.
   */
  fetch(cert: X509Certificate, issuer: X509Certificate, url: string): Promise<void> {
    const key = keyOf(cert, issuer);
    let entry = this.#entries.get(key);
    if (entry?.inflight) return entry.inflight;
    if (!entry) {
      entry = { knowledge: null, expiresAt: 0, inflight: null };
      this.#entries.set(key, entry);
      if (this.#entries.size > maxEntries) this.#entries.delete(this.#entries.keys().next().value as string);
    }
    const target = entry;
    const started = performance.now();
    const inflight = this.#obtain(cert, issuer, url, key)
      .then(
        ({ answer, from }) => {
          const now = Date.now();
          target.knowledge = { answer, problem: null };
          target.expiresAt = answer.nextUpdate ? answer.nextUpdate.getTime() : now + noNextUpdateTtlMs;
          if (from === 'fetched') this.#metrics.ocspQueried('client', answer.status, (performance.now() - started) / 1000);
        },
        (err: unknown) => {
          const code = err instanceof OcspError ? err.code : 'error';
          target.knowledge = { answer: null, problem: `OCSP ${url}: ${(err as Error).message}` };
          target.expiresAt = Date.now() + failureTtlMs;
          this.#metrics.ocspQueried('client', code, (performance.now() - started) / 1000);
        },
      )
      .finally(() => (target.inflight = null));
    target.inflight = inflight;
    return inflight;
  }

  #obtain(cert: X509Certificate, issuer: X509Certificate, url: string, key: string) {
    return this.#answers.obtain({
      kind: 'ocsp',
      subject: `${url} ${key}`,
      source: url,
      storedAfter: 0,
      verify: (bytes) => verifyOcspResponse(bytes, cert, issuer),
      fetch: async () => {
        const answer = await queryOcsp(cert, issuer, url, limits);
        return { answer, bytes: answer.der };
      },
      shareUntil: (answer) => (answer.nextUpdate ? answer.nextUpdate.getTime() : Date.now() + noNextUpdateTtlMs),
    });
  }
}

function keyOf(cert: X509Certificate, issuer: X509Certificate): string {
  return `${issuer.fingerprint256}/${cert.serialNumber}`;
}
