import { createHash, randomBytes } from 'node:crypto';
import type { Logger, Metrics } from '../observe/index.js';
import type { RedisLink } from './redis-link.js';

/** What an answer is: a CRL, an OCSP answer about a client certificate (or a CA above it), an OCSP staple of a served certificate. */
export type SharedAnswerKind = 'crl' | 'ocsp' | 'staple';

/** One answer to obtain: how to check bytes, how to fetch them, how long they are worth sharing. */
export interface AnswerRequest<T> {
  readonly kind: SharedAnswerKind;
  /** What the answer is for (a CRL's URL; responder, issuer and serial): hashed into the key, so every instance names it alike. */
  readonly subject: string;
  /** Where it comes from, for logs (a URL). */
  readonly source: string;
  /**
   * A shared copy stored at or before this moment (ms since the epoch) is not
   * taken: the caller already holds an answer obtained then, and asks for a
   * newer one. 0 takes any.
   */
  readonly storedAfter: number;
  /**
   * Every check a fetched answer goes through (signature, issuer, freshness):
   * a shared copy is never used as it is. Throws when the bytes must not be used.
   */
  verify(bytes: Buffer): Promise<T>;
  /** Fetches from the origin and verifies; throws (the caller's error) on failure. */
  fetch(): Promise<{ readonly answer: T; readonly bytes: Buffer }>;
  /** When the answer stops being worth sharing (its nextUpdate, ms since the epoch); null: it is not shared. */
  shareUntil(answer: T): number | null;
}

export interface Obtained<T> {
  readonly answer: T;
  /** `shared`: a copy another instance fetched, verified here; `fetched`: from the origin. */
  readonly from: 'shared' | 'fetched';
}

/**
 * Where revocation answers and staples come from: the origin only (one
 * instance), or the cluster's copies first. `obtain` rejects only with the
 * error of `fetch` (or of `verify` on fetched bytes); safe to call
 * concurrently (callers keep one request in flight per answer).
 */
export interface AnswerSharing {
  obtain<T>(request: AnswerRequest<T>): Promise<Obtained<T>>;
}

/** The memory backend: every answer is fetched by the process that needs it, as without a cluster. */
export const localAnswers: AnswerSharing = {
  obtain: async (request) => ({ answer: (await request.fetch()).answer, from: 'fetched' }),
};

/** The fetcher's lock outlives the longest fetch (10 s) with margin; a fetcher that died frees it by then. */
const lockTtlMs = 15_000;
/** How often an instance waiting for another's fetch looks whether it is done. */
const pollMs = 100;

const releaseScript = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;

/** What a look at the shared copy found: an answer to use, or the `at` of the copy not taken (null: there was none). */
type Look<T> = { readonly use: Obtained<T> } | { readonly seen: string | null };

const codeOf = (err: unknown): string => {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : 'error';
};

/**
 * Answers shared through the cluster's Redis. A copy is a hash
 * `pcl:<cluster>:answer:<kind>:<sha256 of subject>` holding the bytes as the
 * origin sent them (`der`) and when they were stored (`at`), expiring at the
 * answer's nextUpdate. To obtain one: take the shared copy when it verifies
 * here; otherwise fetch under a short lock
 * (`pcl:<cluster>:answer-lock:<kind>:<hash>`), so that the fleet fetches once
 * while the others wait for the copy (bounded by the lock's 15 s; after that,
 * or when the fetcher failed, each fetches itself). A copy that fails
 * verification is logged (`shared_answer_rejected`), counted, and replaced by
 * the fetched one. Redis lost: every command is skipped or fails fast, and the
 * answer is fetched as without a cluster.
 */
export function sharedAnswers(link: RedisLink, log: Logger, metrics: Metrics): AnswerSharing {
  return new RedisAnswers(link, log, metrics);
}

class RedisAnswers implements AnswerSharing {
  constructor(
    private readonly link: RedisLink,
    private readonly log: Logger,
    private readonly metrics: Metrics,
  ) {}

  async obtain<T>(request: AnswerRequest<T>): Promise<Obtained<T>> {
    if (!this.link.up) return this.#fetch(request, null, 'direct');
    const hash = createHash('sha256').update(request.subject).digest('hex');
    const key = this.link.key('answer', request.kind, hash);
    const first = await this.#look(request, key, null);
    if ('use' in first) return first.use;
    const lock = this.link.key('answer-lock', request.kind, hash);
    const token = randomBytes(16).toString('hex');
    const held = await this.link.redis.set(lock, token, 'PX', lockTtlMs, 'NX').catch(() => null);
    if (held === 'OK') {
      try {
        // the previous holder may have stored it between the first look and the lock
        const again = await this.#look(request, key, first.seen);
        return 'use' in again ? again.use : await this.#fetch(request, key, 'fetched');
      } finally {
        await this.link.redis.eval(releaseScript, 1, lock, token).catch(() => {}); // expires by itself otherwise
      }
    }
    // another instance fetches it now: its copy is awaited, then taken like any other
    if (await this.#waitForRelease(lock)) {
      const after = await this.#look(request, key, first.seen);
      if ('use' in after) return after.use;
    }
    return this.#fetch(request, key, 'fetched');
  }

  /**
   * The shared copy, verified, to use; otherwise what was seen: no copy, one
   * stored too early, one that does not verify (logged), or Redis failing. A
   * copy stored at `seen` was looked at already: it is not verified (and logged) twice.
   */
  async #look<T>(request: AnswerRequest<T>, key: string, seen: string | null): Promise<Look<T>> {
    let copy: { der?: Buffer; at?: Buffer };
    try {
      copy = (await this.link.redis.hgetallBuffer(key)) as { der?: Buffer; at?: Buffer };
    } catch {
      return { seen: null }; // Redis lost: fetched as without a cluster
    }
    if (!copy.der) return { seen: null };
    const at = copy.at?.toString() ?? '';
    if (at === seen || (request.storedAfter > 0 && !(Number(at) > request.storedAfter))) return { seen: at };
    try {
      const answer = await request.verify(copy.der);
      this.metrics.sharedAnswers.inc({ kind: request.kind, result: 'shared' });
      return { use: { answer, from: 'shared' } };
    } catch (err) {
      this.metrics.sharedAnswers.inc({ kind: request.kind, result: 'rejected' });
      this.log.warn(
        { event: 'shared_answer_rejected', kind: request.kind, source: request.source, key, reason: codeOf(err), detail: (err as Error).message },
        `the cluster's copy of the ${request.kind} answer from ${request.source} does not verify here and is not used (${(err as Error).message}); fetching it`,
      );
      return { seen: at };
    }
  }

  /** Fetches from the origin and, with a key, shares what verified until its nextUpdate. */
  async #fetch<T>(request: AnswerRequest<T>, key: string | null, result: 'fetched' | 'direct'): Promise<Obtained<T>> {
    const { answer, bytes } = await request.fetch();
    const until = request.shareUntil(answer);
    const now = Date.now();
    if (key && until !== null && until > now) {
      try {
        await this.link.redis.multi().hset(key, 'der', bytes, 'at', String(now)).pexpireat(key, Math.floor(until)).exec();
      } catch {
        result = 'direct'; // not shared this time: the next instance that needs it fetches it too
      }
    }
    this.metrics.sharedAnswers.inc({ kind: request.kind, result });
    return { answer, from: 'fetched' };
  }

  /** Waits until the lock is gone (true), or until it would have expired, or Redis fails (false). */
  async #waitForRelease(lock: string): Promise<boolean> {
    const deadline = Date.now() + lockTtlMs;
    while (Date.now() < deadline) {
      let exists: number;
      try {
        exists = await this.link.redis.exists(lock);
      } catch {
        return false;
      }
      if (exists === 0) return true;
      await new Promise((resolve) => setTimeout(resolve, pollMs));
    }
    return false;
  }
}
