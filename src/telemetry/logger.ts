import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

/**
 * The diagnostic log: JSON lines on stdout with ISO times and level names.
 * Secrets (keys, tickets) are never passed to it.
 */
export function createLogger(level: LevelWithSilent = 'info'): Logger {
  return pino({
    level,
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  });
}
