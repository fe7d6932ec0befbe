/** What a request costs against its bucket: whether it may go, and what the RateLimit fields say. */
export interface RateDecision {
  readonly allowed: boolean;
  /** Whole requests left in the bucket after this one. */
  readonly remaining: number;
  /** Seconds until the next request would be allowed (0 when one is). */
  readonly retryAfter: number;
  /** Seconds until the bucket is full again. */
  readonly reset: number;
}

/**
 * Token buckets by key: `burst` requests at once, refilled at `rps` per
 * second. Synchronous, so the request path never waits on it: the cluster
 * backend keeps local buckets and reconciles them through Redis in the
 * background rather than asking it per request.
 */
export interface RateBuckets {
  take(key: string, rps: number, burst: number, now?: number): RateDecision;
}

interface Bucket {
  tokens: number;
  at: number;
}

/** Buckets kept at most; past it the least recently used go (a full bucket is the same as a forgotten one). */
const maxBuckets = 100_000;

/** The `memory` backend: one process's buckets. */
export function memoryRateBuckets(max = maxBuckets): RateBuckets {
  const buckets = new Map<string, Bucket>();
  return {
    take(key, rps, burst, now = performance.now()) {
      let b = buckets.get(key);
      if (b) {
        buckets.delete(key); // re-inserted last: least recently used first
        b.tokens = Math.min(burst, b.tokens + ((now - b.at) / 1000) * rps);
        b.at = now;
      } else {
        b = { tokens: burst, at: now };
        if (buckets.size >= max) buckets.delete(buckets.keys().next().value as string);
      }
      buckets.set(key, b);
      const allowed = b.tokens >= 1;
      if (allowed) b.tokens -= 1;
      return {
        allowed,
        remaining: Math.floor(b.tokens),
        retryAfter: allowed ? 0 : (1 - b.tokens) / rps,
        reset: (burst - b.tokens) / rps,
      };
    },
  };
}
