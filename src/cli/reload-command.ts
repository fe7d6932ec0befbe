import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import YAML from 'yaml';
import { controlSocketPath, sendControl } from '../supervisor/index.js';
import { configFileFor } from './start-command.js';

/**
 * The dataDir a config names, read without validating the rest: a broken
 * config must still reach the running instance, which then reports why it
 * refuses it.
 */
function dataDirOf(file: string | undefined): string {
  if (file === undefined) return resolve('.portcullis');
  let raw: unknown;
  try {
    raw = YAML.parse(readFileSync(file, 'utf8'));
  } catch {
    raw = undefined;
  }
  const value = (raw as { dataDir?: unknown } | undefined)?.dataDir;
  return resolve(dirname(resolve(file)), typeof value === 'string' ? value : './.portcullis');
}

/**
 * Asks the running instance (found through the control socket of the
 * config's dataDir) to reload; prints its answer. Exit status 0 when it
 * reloaded, 2 when it refused the reload (whatever the reason), 1 when none
 * answers (PCL_CONTROL_UNREACHABLE, thrown).
 */
export async function runReload(configOption: string | undefined): Promise<void> {
  const path = controlSocketPath(dataDirOf(configFileFor(configOption)));
  const result = await sendControl(path, { command: 'reload' });
  if (result.ok) {
    process.stdout.write(`${result.message}\n`);
    return;
  }
  process.stderr.write(`portcullis: ${result.code}: reload refused, the previous config keeps serving: ${result.message}\n`);
  process.exit(2);
}
