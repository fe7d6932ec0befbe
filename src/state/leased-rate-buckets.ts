import type { Logger, Metrics } from '../observe/index.js';
import { memoryRateBuckets, type RateBuckets, type RateDecision } from './rate-buckets.js';
import type { RedisLink } from './redis-link.js';

/*
 * Rate limits as one limit across the fleet (issue 19), without Redis on the
 * request path. The fleet's token bucket per key lives in Redis; each serving
 * process holds a small lease of whole tokens per key and spends it
 * synchronously, asking Redis for the next lease in the background before the
 * current one runs out. docs/cluster.md "Rate limits" states the overshoot
 * bound these choices give and the figures measured.
 */

/**
 * The fleet's bucket, atomically, on Redis's own clock (no clock agreement
 * between instances needed): refill by the time elapsed since the last take,
 * grant up to ARGV[3] whole tokens, and answer {granted, tokens left, ms until
 * the next whole token}. The key expires once the bucket would be full again
 * (a missing bucket is a full one).
 */
const leaseScript = `
local rps = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000
local state = redis.call('HMGET', KEYS[1], 't', 'at')
local tokens = burst
if state[1] then tokens = math.min(burst, tonumber(state[1]) + math.max(0, now - tonumber(state[2])) * rps / 1000) end
local granted = math.max(0, math.min(want, math.floor(tokens)))
tokens = tokens - granted
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) * 1000 / rps) + 1000)
local nextMs = 0
if tokens < 1 then nextMs = math.ceil((1 - tokens) * 1000 / rps) end
return {granted, tostring(tokens), nextMs}
`;

/** The script as an ioredis command on a pipeline: EVALSHA, the script loaded first when the connection lacks it. */
interface LeasePipeline {
  pclRateLease(key: string, rps: number, burst: number, want: number): LeasePipeline;
  exec(): Promise<[Error | null, unknown][] | null>;
}

/**
 * Tokens per lease: a tenth of the burst, at least 1. Small enough that the
 * fleet's burst is shared out in about ten leases (and the overshoot bound,
 * which grows with it, stays a fraction of the burst per process), large
 * enough that a busy client costs one Redis call per lease, not per request.
 */
export const leaseSizeOf = (burst: number): number => Math.max(1, Math.ceil(burst / 10));

/**
 * Unspent tokens of a lease are dropped this long after it came: a process
 * that leased tokens for a client who went elsewhere cannot spend them in a
 * burst later. Dropped tokens are not returned (the fleet under-admits by them).
 */
export const leaseTtlMs = 1_000;
/** A lease request unanswered this long counts as Redis lost: local buckets take over. */
const fetchTimeoutMs = 2_000;
/** After a failure while the link still looked up, how long the local buckets serve before the fleet is tried again. */
const retrySharedMs = 5_000;
/** A debt left unpaid because the fleet was empty is asked for again when Redis said the next token comes, at the latest after this. */
const maxSettleDelayMs = 60_000;
const maxLeases = 100_000;

/** One key's lease in this process. */
interface Lease {
  readonly key: string;
  readonly redisKey: string;
  rps: number;
  burst: number;
  /** Tokens per lease request (leaseSizeOf(burst)), and the most this process admits on debt. */
  size: number;
  /** Whole tokens held, spendable until `expiresAt`. */
  tokens: number;
  expiresAt: number;
  /** Requests admitted before a lease covered them (at most `size`): paid from the next tokens granted. */
  debt: number;
  /** A lease request in flight (one per key per process), since `fetchedAt`. */
  fetching: boolean;
  fetchedAt: number;
  /** The fleet's bucket was empty: refuse locally until then, without asking Redis. */
  refusedUntil: number;
  /** The fleet's tokens at the last answer, and when it came: for the RateLimit fields. */
  fleetLeft: number;
  answeredAt: number;
  settle: NodeJS.Timeout | null;
}

/**
 * The `redis` backend's rate buckets: synchronous like the memory ones, one
 * limit across every process of the cluster. `take` never waits on Redis:
 * it spends the local lease, or admits on a bounded debt while the first
 * lease is on its way, or refuses locally while Redis said the fleet's bucket
 * is empty. When Redis is lost (or does not answer within 2 s) the process
 * falls back to its own memory buckets, the full limit per process, and
 * returns to the fleet's when the link is back: the cluster fails open on
 * rate limits, for availability (docs/cluster.md). Not for concurrent use
 * across threads; `stop` ends its timers.
 */
export class LeasedRateBuckets implements RateBuckets {
  readonly #link: RedisLink;
  readonly #log: Logger;
  readonly #metrics: Metrics;
  readonly #leases = new Map<string, Lease>();
  readonly #max: number;
  readonly #unlisten: () => void;
  /** Leases to ask for at the end of this turn of the event loop, in one pipeline. */
  #queue: Lease[] = [];
  #local: RateBuckets | null = null;
  #localSince = 0;
  #stopped = false;

  constructor(link: RedisLink, log: Logger, metrics: Metrics, max = maxLeases) {
    this.#link = link;
    this.#log = log;
    this.#metrics = metrics;
    this.#max = max;
    link.redis.defineCommand('pclRateLease', { numberOfKeys: 1, lua: leaseScript });
    this.#unlisten = link.onLink((up) => (up ? this.#rejoin() : this.#fallBack('the link to Redis was lost')));
    if (!link.up) this.#fallBack('the link to Redis is down');
  }

  /** Whether limits are the fleet's now (false: this process's own buckets, Redis being lost). */
  get shared(): boolean {
    return this.#local === null;
  }

  take(key: string, rps: number, burst: number, now = performance.now()): RateDecision {
    if (this.#local !== null) {
      if (this.#link.up && now - this.#localSince >= retrySharedMs) this.#rejoin();
      else return this.#local.take(key, rps, burst, now);
    }
    const lease = this.#leaseOf(key, rps, burst);
    if (lease.tokens > 0 && now >= lease.expiresAt) lease.tokens = 0;
    if (lease.tokens >= 1) {
      lease.tokens -= 1;
      // low water: half a lease left, ask for the next one now
      if (lease.tokens <= lease.size >> 1 && now >= lease.refusedUntil) this.#fetch(lease, now);
      return this.#admitted(lease, now);
    }
    if (now < lease.refusedUntil) return this.#refused(lease, now);
    if (lease.fetching && now - lease.fetchedAt > fetchTimeoutMs) {
      this.#fallBack(`a lease request had no answer within ${fetchTimeoutMs / 1000} s`);
      return this.take(key, rps, burst, now);
    }
    // no lease yet (or spent, the next on its way): admit on a debt of at most one lease, paid from the next tokens granted
    const admit = lease.debt < lease.size;
    if (admit) lease.debt += 1;
    this.#fetch(lease, now);
    return admit ? this.#admitted(lease, now) : this.#refused(lease, now);
  }

  /** Ends the timers; answers still on their way are dropped. */
  stop(): void {
    this.#stopped = true;
    this.#unlisten();
    this.#forgetLeases();
  }

  /** The key's lease, created on first use, moved last for the LRU order; the least recently used goes past the bound. */
  #leaseOf(key: string, rps: number, burst: number): Lease {
    let lease = this.#leases.get(key);
    if (lease) {
      this.#leases.delete(key);
      lease.rps = rps;
      if (lease.burst !== burst) {
        lease.burst = burst;
        lease.size = leaseSizeOf(burst);
      }
    } else {
      if (this.#leases.size >= this.#max) this.#evictOldest();
      lease = { key, redisKey: this.#link.key('rl', key), rps, burst, size: leaseSizeOf(burst), tokens: 0, expiresAt: 0, debt: 0, fetching: false, fetchedAt: 0, refusedUntil: 0, fleetLeft: burst, answeredAt: 0, settle: null };
    }
    this.#leases.set(key, lease);
    return lease;
  }

  #evictOldest(): void {
    const [key, oldest] = this.#leases.entries().next().value as [string, Lease];
    if (oldest.settle) clearTimeout(oldest.settle);
    this.#leases.delete(key);
  }

  /**
   * Asks Redis, at the end of this turn of the event loop, for enough tokens
   * to pay the debt and fill the lease; at most one request per key in
   * flight. The request path only queues: the leases of one turn go in one
   * pipeline, sent by `#flush`.
   */
  #fetch(lease: Lease, now: number): void {
    if (lease.fetching || this.#stopped) return;
    lease.fetching = true;
    lease.fetchedAt = now;
    if (this.#queue.push(lease) === 1) setImmediate(this.#flush);
  }

  readonly #flush = (): void => {
    const batch = this.#queue;
    this.#queue = [];
    if (this.#stopped || this.#local !== null) {
      for (const lease of batch) lease.fetching = false;
      return;
    }
    const pipeline = this.#link.redis.pipeline() as unknown as LeasePipeline;
    // the debt run up since the request was queued is asked for too
    const wants = batch.map((lease) => Math.max(1, lease.size - lease.tokens + lease.debt));
    batch.forEach((lease, i) => pipeline.pclRateLease(lease.redisKey, lease.rps, lease.burst, wants[i] as number));
    pipeline.exec().then(
      (results) => batch.forEach((lease, i) => this.#answered(lease, wants[i] as number, results?.[i] ?? [new Error('no answer in the pipeline'), null])),
      (err: Error) => batch.forEach((lease, i) => this.#answered(lease, wants[i] as number, [err, null])),
    );
  };

  #answered(lease: Lease, want: number, [err, answer]: [Error | null, unknown]): void {
    lease.fetching = false;
    if (err === null) return this.#settle(lease, want, answer as [number, string, number]);
    this.#metrics.rateLimitLeases.inc({ result: 'failed' });
    this.#fallBack(err.message);
  }

  /** A lease came: pay the debt first, hold the rest until it expires; an empty fleet refuses locally until its next token. */
  #settle(lease: Lease, want: number, [granted, left, nextMs]: [number, string, number]): void {
    if (this.#stopped || this.#leases.get(lease.key) !== lease) return; // forgotten meanwhile: the tokens are lost to the fleet
    this.#metrics.rateLimitLeases.inc({ result: granted > 0 ? 'granted' : 'empty' });
    const now = performance.now();
    const paid = Math.min(granted, lease.debt);
    lease.debt -= paid;
    if (granted > paid) {
      lease.tokens += granted - paid;
      lease.expiresAt = now + leaseTtlMs;
    }
    lease.fleetLeft = Number(left);
    lease.answeredAt = now;
    lease.refusedUntil = granted < want ? now + nextMs : 0;
    if (lease.debt > 0 && lease.settle === null) {
      lease.settle = setTimeout(() => {
        lease.settle = null;
        if (lease.debt > 0) this.#fetch(lease, performance.now());
      }, Math.min(Math.max(1, nextMs), maxSettleDelayMs));
      lease.settle.unref();
    }
  }

  #admitted(lease: Lease, now: number): RateDecision {
    return { allowed: true, remaining: Math.floor(lease.tokens + Math.max(0, this.#fleetNow(lease, now))), retryAfter: 0, reset: (lease.burst - this.#fleetNow(lease, now)) / lease.rps };
  }

  #refused(lease: Lease, now: number): RateDecision {
    return { allowed: false, remaining: 0, retryAfter: Math.max(0, lease.refusedUntil - now) / 1000, reset: (lease.burst - this.#fleetNow(lease, now)) / lease.rps };
  }

  /** The fleet's tokens now, as far as this process knows: the last answer plus the refill since. */
  #fleetNow(lease: Lease, now: number): number {
    return Math.min(lease.burst, lease.fleetLeft + (Math.max(0, now - lease.answeredAt) / 1000) * lease.rps);
  }

  /** Redis lost: this process's own buckets (full limit each) until it is back. */
  #fallBack(why: string): void {
    if (this.#local !== null || this.#stopped) return;
    this.#local = memoryRateBuckets();
    this.#localSince = performance.now();
    this.#forgetLeases();
    this.#metrics.rateLimitFallbacks.inc();
    this.#log.warn({ event: 'rate_limit_local', backend: this.#link.settings.display, error: why }, `rate limits fall back to this process's own buckets until the redis state backend is back (${why}): meanwhile each process admits a client's full limit`);
  }

  /** Back to the fleet's buckets, with fresh leases (the local buckets of the outage are dropped). */
  #rejoin(): void {
    if (this.#local === null || this.#stopped) return;
    this.#local = null;
    this.#log.info({ event: 'rate_limit_shared', backend: this.#link.settings.display }, 'rate limits are shared across the cluster again');
  }

  #forgetLeases(): void {
    for (const lease of this.#leases.values()) if (lease.settle) clearTimeout(lease.settle);
    this.#leases.clear();
  }
}
