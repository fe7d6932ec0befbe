import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };
export type Level = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';

/**
 * The diagnostic log: JSON lines on stderr with ISO times and level names,
 * kept apart from the access log (stdout or a file). Written synchronously:
 * it is rare, and a crash must not lose its last lines. Secrets (keys,
 * tickets) are never passed to it.
 */
export function createLogger(level: LevelWithSilent = 'info'): Logger {
  return pino(
    {
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    pino.destination({ fd: 2, sync: true }),
  );
}
