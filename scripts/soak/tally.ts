/**
 * What the soak's clients saw: good requests (succeeded / failed), bad
 * clients (got their documented refusal / got something else), reloads, and
 * a few counters about connections. A failure is classified against the
 * reload windows only at the end, since a reload may start just after a
 * request that it then disturbs.
 */

export interface Failure {
  readonly kind: string;
  readonly startedAt: number;
  readonly endedAt: number;
  readonly detail: string;
}

export interface ReloadRecord {
  readonly startedAt: number;
  readonly endedAt: number;
  readonly variant: string;
  readonly ok: boolean;
  /** Why the reload or the check after it failed. */
  readonly error: string | null;
}

export interface BadCount {
  refused: number;
  wrong: number;
  /** Longest time from connect to the refusal (or to giving up). */
  maxMs: number;
  totalMs: number;
}

/** How far around a reload (start − 1 s … end + 1 s) a good client's error may have started to be blamed on it. */
export const reloadWindowMs = 1000;
/** Failures kept in full; beyond that only counted. */
const keptFailures = 5000;

export class Tally {
  readonly good = new Map<string, { ok: number; failed: number }>();
  readonly bad = new Map<string, BadCount>();
  readonly goodFailures: Failure[] = [];
  readonly badFailures: Failure[] = [];
  readonly reloads: ReloadRecord[] = [];
  /** Free-form counters: connections opened, sessions the server ended … */
  readonly counters = new Map<string, number>();

  count(name: string, by = 1): void {
    this.counters.set(name, (this.counters.get(name) ?? 0) + by);
  }

  goodOk(kind: string): void {
    const c = this.#goodOf(kind);
    c.ok++;
  }

  goodFailed(kind: string, startedAt: number, detail: string): void {
    this.#goodOf(kind).failed++;
    if (this.goodFailures.length < keptFailures) this.goodFailures.push({ kind, startedAt, endedAt: Date.now(), detail });
  }

  /** `refused`: the client got the documented refusal; `got` says what it got otherwise. */
  badOutcome(kind: string, startedAt: number, refused: boolean, got: string): void {
    let c = this.bad.get(kind);
    if (!c) this.bad.set(kind, (c = { refused: 0, wrong: 0, maxMs: 0, totalMs: 0 }));
    const ms = Date.now() - startedAt;
    c.maxMs = Math.max(c.maxMs, ms);
    c.totalMs += ms;
    if (refused) c.refused++;
    else {
      c.wrong++;
      if (this.badFailures.length < keptFailures) this.badFailures.push({ kind, startedAt, endedAt: Date.now(), detail: got });
    }
  }

  /** The reload whose window holds `at`, if any. */
  reloadAround(at: number): ReloadRecord | null {
    return this.reloads.find((r) => at >= r.startedAt - reloadWindowMs && at <= r.endedAt + reloadWindowMs) ?? null;
  }

  #goodOf(kind: string): { ok: number; failed: number } {
    let c = this.good.get(kind);
    if (!c) this.good.set(kind, (c = { ok: 0, failed: 0 }));
    return c;
  }
}
