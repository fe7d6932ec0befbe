import { controlSocketFile } from '../state/index.js';
import { sendControl } from '../supervisor/index.js';
import { dataDirOf } from './data-dir.js';
import { configFileFor } from './start-command.js';

/**
 * Asks the running instance (found through the control socket of the
 * config's dataDir) to reload; prints its answer. Exit status 0 when it
 * reloaded, 2 when it refused the reload (whatever the reason), 1 when none
 * answers (PCL_CONTROL_UNREACHABLE, thrown).
 */
export async function runReload(configOption: string | undefined): Promise<void> {
  const path = controlSocketFile(dataDirOf(configFileFor(configOption)));
  const result = await sendControl(path, { command: 'reload' });
  if (result.ok) {
    process.stdout.write(`${result.message}\n`);
    return;
  }
  process.stderr.write(`portcullis: ${result.code}: reload refused, the previous config keeps serving: ${result.message}\n`);
  process.exit(2);
}
