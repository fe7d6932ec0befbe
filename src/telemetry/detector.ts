import { isIPv6, type BlockList } from 'node:net';

export interface DetectorSettings {
  /** Failures from one address within `windowMs` that get it blocked. */
  readonly threshold: number;
  readonly windowMs: number;
  readonly blockMs: number;
  /** Never blocked, whatever they do. */
  readonly allow: BlockList;
}

export interface BlockDecision {
  readonly address: string;
  readonly failures: number;
  readonly until: number;
  /** The reason of the failure that crossed the threshold. */
  readonly lastReason: string;
}

/** How many addresses are tracked at most: past it the least recently failing ones are forgotten. */
const maxTracked = 50_000;

/**
 * Counts refused handshakes and client-certificate failures per source
 * address in a sliding window; an address that reaches the threshold is
 * blocked for a while, and its new connections are closed at accept, before
 * any TLS work. Memory is bounded: each address keeps at most `threshold`
 * timestamps and at most `maxTracked` addresses are tracked.
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

  /** Whether connections from `address` are refused at accept right now. */
  isBlocked(address: string, now = Date.now()): boolean {
    const until = this.#blocked.get(address);
    if (until === undefined) return false;
    if (until > now) return true;
    this.#blocked.delete(address);
    return false;
  }

  /** Records one failure; returns the block it triggered, if it did. */
  failure(address: string, reason: string, now = Date.now()): BlockDecision | null {
    const s = this.#settings;
    if (!address || this.#blocked.has(address) || s.allow.check(address, isIPv6(address) ? 'ipv6' : 'ipv4')) return null;
    const times = this.#failures.get(address) ?? [];
    // re-inserted on every failure: the map's order is least recently failing first
    this.#failures.delete(address);
    while (times.length > 0 && (times[0] as number) <= now - s.windowMs) times.shift();
    times.push(now);
    if (times.length >= s.threshold) {
      const until = now + s.blockMs;
      this.#blocked.set(address, until);
      if (this.#blocked.size > maxTracked) this.#forgetExpired(now);
      return { address, failures: times.length, until, lastReason: reason };
    }
    this.#failures.set(address, times);
    if (this.#failures.size > maxTracked) this.#failures.delete(this.#failures.keys().next().value as string);
    return null;
  }

  #forgetExpired(now: number): void {
    for (const [address, until] of this.#blocked) if (until <= now) this.#blocked.delete(address);
    // still too many live blocks: the oldest go first (a flood of addresses must not exhaust memory)
    for (const address of this.#blocked.keys()) {
      if (this.#blocked.size <= maxTracked) break;
      this.#blocked.delete(address);
    }
  }

  /** Addresses blocked now, with when their block ends. */
  blocked(now = Date.now()): { address: string; until: number }[] {
    return [...this.#blocked].filter(([, until]) => until > now).map(([address, until]) => ({ address, until }));
  }
}
