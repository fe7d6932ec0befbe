import type { EventEmitter } from 'node:events';

/**
 * Waiting in tests, on the thing awaited, never for a fixed time: `whenever`
 * checks a condition at each event that can change it; `waitFor` polls one
 * that no event announces (a server that is ready once it answers), bounded;
 * `untilPast` waits for the clock itself, when the behaviour under test is
 * decided by the clock (an expiry, a block that ends at a stated time).
 */

export interface WaitOptions {
  /** What is awaited, for the error: "a webhook alert". */
  readonly what: string;
  /** Default 10 s. */
  readonly timeoutMs?: number;
}

/**
 * Resolves with the first value other than undefined that `check` returns,
 * calling it now and at every `event` of `emitter`; rejects naming `what`
 * after `timeoutMs`, or with what `check` throws.
 */
export function whenever<T>(emitter: EventEmitter, event: string, check: () => T | undefined, opts: WaitOptions): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  return new Promise<T>((resolve, reject) => {
    const done = () => {
      clearTimeout(timer);
      emitter.off(event, listener);
    };
    const listener = () => {
      try {
        const value = check();
        if (value === undefined) return;
        done();
        resolve(value);
      } catch (err) {
        done();
        reject(err as Error);
      }
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`${opts.what}: not within ${timeoutMs} ms`));
    }, timeoutMs);
    emitter.on(event, listener);
    listener();
  });
}

/**
 * A bounded poll, only for a condition no event announces: resolves with the
 * first value other than undefined that `check` returns, calling it every
 * `intervalMs` (default 50); rejects naming `what` after `timeoutMs`, or with
 * what `check` throws.
 */
export async function waitFor<T>(check: () => T | undefined | Promise<T | undefined>, opts: WaitOptions & { readonly intervalMs?: number }): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (performance.now() > deadline) throw new Error(`${opts.what}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, opts.intervalMs ?? 50));
  }
}

/** Resolves once `Date.now()` is past `at` (ms since the epoch), the instant the system under test decides by. */
export async function untilPast(at: number): Promise<void> {
  // a timer may fire a millisecond early: check the clock, not the timer
  while (Date.now() <= at) await new Promise((resolve) => setTimeout(resolve, at - Date.now() + 1));
}

/** `promise`, or a rejection naming `what` when it has not settled within `ms`: a bound on a wait, never a delay. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)));
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}
