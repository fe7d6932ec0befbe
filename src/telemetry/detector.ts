export interface DetectorSettings {
  /** Failures for one key within `windowMs` that get it blocked. */
  readonly threshold: number;
  readonly windowMs: number;
  readonly blockMs: number;
}

export interface BlockDecision {
  /** What was counted: a source address, or a JA4 fingerprint. */
  readonly key: string;
  readonly failures: number;
  readonly until: number;
  /** The reason of the failure that crossed the threshold. */
  readonly lastReason: string;
}

/** How many keys are tracked at most: past it the least recently failing ones are forgotten. */
const maxTracked = 50_000;

/**
 * Counts refused handshakes and client-certificate failures per key (a
 * source address, or a JA4) in a sliding window; a key that reaches the
 * threshold is blocked for a while. Memory is bounded: each key keeps at most
 * `threshold` timestamps and at most `maxTracked` keys are tracked. Which
 * failures count, and for whom, is the caller's decision (probe-guard.ts).
 */
export class Detector {
  #settings: DetectorSettings;
  readonly #failures = new Map<string, number[]>();
  readonly #blocked = new Map<string, number>();

  constructor(settings: DetectorSettings) {
    this.#settings = settings;
  }

  configure(settings: DetectorSettings): void {
    this.#settings = settings;
  }

  isBlocked(key: string, now = Date.now()): boolean {
    const until = this.#blocked.get(key);
    if (until === undefined) return false;
    if (until > now) return true;
    this.#blocked.delete(key);
    return false;
  }

  /** Records one failure; returns the block it triggered, if it did. */
  failure(key: string, reason: string, now = Date.now()): BlockDecision | null {
    const s = this.#settings;
    if (!key || this.isBlocked(key, now)) return null;
    const times = this.#failures.get(key) ?? [];
    // re-inserted on every failure: the map's order is least recently failing first
    this.#failures.delete(key);
    while (times.length > 0 && (times[0] as number) <= now - s.windowMs) times.shift();
    times.push(now);
    if (times.length >= s.threshold) {
      const until = now + s.blockMs;
      this.#blocked.set(key, until);
      if (this.#blocked.size > maxTracked) this.#forgetExpired(now);
      return { key, failures: times.length, until, lastReason: reason };
    }
    this.#failures.set(key, times);
    if (this.#failures.size > maxTracked) this.#failures.delete(this.#failures.keys().next().value as string);
    return null;
  }

  /**
   * Blocks `key` until `until`, as decided elsewhere (another instance of a
   * cluster); returns false when it was blocked at least that long already,
   * or `until` has passed.
   */
  impose(key: string, until: number, now = Date.now()): boolean {
    if (!key || until <= now || (this.#blocked.get(key) ?? 0) >= until) return false;
    this.#blocked.set(key, until);
    this.#failures.delete(key);
    if (this.#blocked.size > maxTracked) this.#forgetExpired(now);
    return true;
  }

  #forgetExpired(now: number): void {
    for (const [key, until] of this.#blocked) if (until <= now) this.#blocked.delete(key);
    // still too many live blocks: the oldest go first (a flood of addresses must not exhaust memory)
    for (const key of this.#blocked.keys()) {
      if (this.#blocked.size <= maxTracked) break;
      this.#blocked.delete(key);
    }
  }

  /** Keys blocked now, with when their block ends. */
  blocked(now = Date.now()): { key: string; until: number }[] {
    return [...this.#blocked].filter(([, until]) => until > now).map(([key, until]) => ({ key, until }));
  }
}
