import { durationMs, durationPattern } from '../config/index.js';
import { PortcullisError } from '../errors.js';
import { controlSocketFile, StateWriteError } from '../state/index.js';
import { sendControl, unsavedRetryMs, type ControlRequest } from '../supervisor/index.js';

/** A duration flag such as `--since 7d` in milliseconds; null when not given. */
export function durationFlag(flag: string, value: string | undefined): number | null {
  if (value === undefined) return null;
  const ms = durationPattern.test(value) ? durationMs(value) : NaN;
  if (!(ms > 0)) throw new PortcullisError('PCL_CLI_USAGE', `${flag} ${value} is not a duration; use e.g. "30d", "12h"`);
  return ms;
}

/** A request that makes the running instance re-read a store a command just wrote, with what the command changed (`edit`). */
type StoreRequest = Extract<ControlRequest, { command: 'deny-list' | 'api-keys' }>;

/**
 * Asks the running instance, if any, to re-read a store a command just wrote
 * (`deny-list`, `api-keys`) and prints the outcome; without one, says when it
 * applies. A refusal is printed, except PCL_STATE_UNAVAILABLE (a removal the
 * cluster could not make), which is thrown: the command did not do its job.
 */
export async function notifyRunningInstance(dataDir: string, request: StoreRequest, what: string, out: NodeJS.WritableStream = process.stdout): Promise<void> {
  try {
    const result = await sendControl(controlSocketFile(dataDir), request, 10_000);
    if (result.ok) out.write(`${result.message}\n`);
    else if (result.code === 'PCL_STATE_UNAVAILABLE') throw new PortcullisError('PCL_STATE_UNAVAILABLE', result.message);
    else process.stderr.write(`portcullis: ${result.code}: the running instance refused the ${what}: ${result.message}\n`);
  } catch (err) {
    if (!(err instanceof PortcullisError && err.code === 'PCL_CONTROL_UNREACHABLE')) throw err;
    out.write(`no running instance answers on ${controlSocketFile(dataDir)}; the ${what} applies when Portcullis starts with dataDir ${dataDir}\n`);
  }
}

/** A control request carrying a change a command could not save. */
type TighteningRequest = StoreRequest;

/**
 * A tightening change (a deny entry, a key revocation) that `failure` kept
 * the command from saving: hands it to the running instance, which applies
 * it on top of what is in force (a block must not wait for disk space) and
 * keeps trying to save it itself. Returns only when the instance could save
 * it (its answer printed on `out`); otherwise throws PCL_STATE_NOT_PERSISTED
 * when the instance applied it, PCL_STATE_WRITE_FAILED when nothing could
 * be applied.
 */
async function applyUnsaved(dataDir: string, request: TighteningRequest, change: string, failure: StateWriteError, out: NodeJS.WritableStream): Promise<void> {
  const socket = controlSocketFile(dataDir);
  let result;
  try {
    result = await sendControl(socket, request, 10_000);
  } catch (err) {
    if (!(err instanceof PortcullisError && err.code === 'PCL_CONTROL_UNREACHABLE')) throw err;
    throw new PortcullisError('PCL_STATE_WRITE_FAILED', `${failure.message}. Nothing was applied (${change}): no running instance answers on ${socket}.`, { cause: failure });
  }
  const why = `${change}: cannot write ${failure.file}: ${failure.problem} (${failure.errno})`;
  if (!result.ok) {
    throw new PortcullisError('PCL_STATE_WRITE_FAILED', `NOT persisted: ${why}. The running instance did not confirm applying it: ${result.code}: ${result.message}. To retry: ${failure.fix}, then run the command again.`, { cause: failure });
  }
  if (result.unsaved === 0) {
    out.write(`${result.message}\n`);
    process.stderr.write(`portcullis: this command could not write ${failure.file} (${failure.errno}); the running instance saved it\n`);
    return;
  }
  throw new PortcullisError(
    'PCL_STATE_NOT_PERSISTED',
    `NOT persisted: ${why}.\n` +
      `Applied to the running instance only: ${result.message}.\n` +
      `The instance saves it by itself once the file can be written (${failure.fix}): it retries every ${unsavedRetryMs / 1000} s and at every control request (e.g. portcullis reload). It is lost if the instance stops before then.`,
    { cause: failure },
  );
}

/**
 * Saves a tightening change with `write`; when the store cannot be written,
 * hands `request` to the running instance instead (see applyUnsaved, which
 * throws unless the instance saved it). `change` names it in messages
 * ("deny list entry sha256:…"). Resolves with 'written' (the caller then
 * notifies the instance as usual) or 'handed over' (the instance has it
 * already).
 */
export async function writeOrHandOver(write: () => void, dataDir: string, request: TighteningRequest, change: string, out: NodeJS.WritableStream = process.stdout): Promise<'written' | 'handed over'> {
  try {
    write();
    return 'written';
  } catch (err) {
    if (!(err instanceof StateWriteError)) throw err;
    await applyUnsaved(dataDir, request, change, err, out);
    return 'handed over';
  }
}

/**
 * Has the running instance, if any, write its summaries under dataDir, so
 * that a report includes the last minute. Without one, the files are as the
 * last instance left them at its stop.
 */
export async function flushRunningInstance(dataDir: string): Promise<void> {
  try {
    const result = await sendControl(controlSocketFile(dataDir), { command: 'flush' }, 10_000);
    if (!result.ok) process.stderr.write(`portcullis: ${result.code}: ${result.message}; the report may miss the last minute\n`);
  } catch (err) {
    if (!(err instanceof PortcullisError && err.code === 'PCL_CONTROL_UNREACHABLE')) throw err;
  }
}
