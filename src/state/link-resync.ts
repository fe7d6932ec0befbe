import type { RedisLink } from './redis-link.js';

/**
 * A second re-read this long after a recovery: the other instances recover
 * at about the same moment and write what they queued meanwhile, and the
 * subscriber connection may come back after their announcement (the link
 * retries at most every second).
 */
export const rereadAfterRecoveryMs = 2_000;

/**
 * Calls `resync` (a full re-read of something kept from Redis) whenever
 * messages may have been missed: at every recovery of the link and again
 * `rereadAfterRecoveryMs` later, and every `everyMs` as a safety net (a
 * subscriber that reconnected on its own). Timers do not keep the process
 * alive. Returns the function that stops it all.
 */
export function resyncOnLink(link: RedisLink, resync: () => void, everyMs: number): () => void {
  let again: NodeJS.Timeout | null = null;
  const stopListening = link.onLink((up) => {
    if (!up) return;
    resync();
    if (again) clearTimeout(again);
    again = setTimeout(resync, rereadAfterRecoveryMs);
    again.unref();
  });
  const periodic = setInterval(resync, everyMs);
  periodic.unref();
  return () => {
    stopListening();
    clearInterval(periodic);
    if (again) clearTimeout(again);
  };
}
