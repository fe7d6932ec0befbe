import type { Logger } from '../observe/index.js';

/**
 * Runs `stop` once on the first SIGTERM or SIGINT, then exits 0 (1 if stopping
 * failed). Later signals are noted and ignored: a second Ctrl-C must not cut
 * the drain short and lose in-flight requests or buffered log lines.
 */
export function onStopSignals(log: Logger, stop: (signal: NodeJS.Signals) => Promise<void>): void {
  let stopping = false;
  const handle = (signal: NodeJS.Signals): void => {
    if (stopping) {
      log.warn({ event: 'stopping', signal }, `received ${signal} again: already stopping`);
      return;
    }
    stopping = true;
    stop(signal).then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ event: 'stop_failed', error: (err as Error).message }, 'error while stopping');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', handle);
  process.on('SIGTERM', handle);
}
