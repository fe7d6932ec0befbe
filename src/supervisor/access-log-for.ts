import type { Config } from '../config/index.js';
import { createAccessLog, type AccessLog } from '../telemetry/index.js';
import { type Logger } from '../observe/index.js';

/** The access log a config asks for, or null when it is off. */
export function accessLogFor(config: Config, log: Logger): AccessLog | null {
  return config.log.access === 'off' ? null : createAccessLog(config.log.access, (message) => log.error({ event: 'access_log_trouble' }, message));
}

/**
 * Reopens the access log after a reload (logrotate moved the file away). A
 * failure is reported on its own: the reload itself was already applied.
 */
export function reopenAccessLog(access: AccessLog | null, log: Logger): void {
  try {
    access?.reopen();
  } catch (err) {
    log.error({ event: 'access_log_trouble', error: (err as Error).message }, 'cannot reopen the access log; lines go to the old file');
  }
}
