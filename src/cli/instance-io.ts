import { durationMs, durationPattern } from '../config/index.js';
import { PortcullisError } from '../errors.js';
import { controlSocketPath, sendControl } from '../supervisor/index.js';

/** A duration flag such as `--since 7d` in milliseconds; null when not given. */
export function durationFlag(flag: string, value: string | undefined): number | null {
  if (value === undefined) return null;
  const ms = durationPattern.test(value) ? durationMs(value) : NaN;
  if (!(ms > 0)) throw new PortcullisError('PCL_CLI_USAGE', `${flag} ${value} is not a duration; use e.g. "30d", "12h"`);
  return ms;
}

/**
 * Asks the running instance, if any, to re-read a store a command just wrote
 * (`deny-list`, `api-keys`) and prints the outcome; without one, says when it
 * applies.
 */
export async function notifyRunningInstance(dataDir: string, command: 'deny-list' | 'api-keys', what: string, out: NodeJS.WritableStream = process.stdout): Promise<void> {
  try {
    const result = await sendControl(controlSocketPath(dataDir), { command }, 10_000);
    if (result.ok) out.write(`${result.message}\n`);
    else process.stderr.write(`portcullis: ${result.code}: the running instance refused the ${what}: ${result.message}\n`);
  } catch (err) {
    if (!(err instanceof PortcullisError && err.code === 'PCL_CONTROL_UNREACHABLE')) throw err;
    out.write(`no running instance answers on ${controlSocketPath(dataDir)}; the ${what} applies when Portcullis starts with dataDir ${dataDir}\n`);
  }
}

/**
 * Has the running instance, if any, write its summaries under dataDir, so
 * that a report includes the last minute. Without one, the files are as the
 * last instance left them at its stop.
 */
export async function flushRunningInstance(dataDir: string): Promise<void> {
  try {
    const result = await sendControl(controlSocketPath(dataDir), { command: 'flush' }, 10_000);
    if (!result.ok) process.stderr.write(`portcullis: ${result.code}: ${result.message}; the report may miss the last minute\n`);
  } catch (err) {
    if (!(err instanceof PortcullisError && err.code === 'PCL_CONTROL_UNREACHABLE')) throw err;
  }
}
