import { readFileSync } from 'node:fs';
import { readLeniently, readsSharedState } from '../config/index.js';
import { resolveDataDir } from '../state/index.js';

/** The config's text, or "" when it cannot be read (the strict load says why). */
function textOf(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/**
 * The dataDir a config names, read without validating the rest: a broken
 * config must still reach the running instance, which then reports why it
 * refuses it. Without a config, the default under the working directory.
 */
export function dataDirOf(file: string | undefined): string {
  if (file === undefined) return resolveDataDir(process.cwd());
  // unreadable: the default dataDir next to it
  return readLeniently(textOf(file), file).dataDir;
}

/** Whether the config shares its state with a cluster (`state.backend: redis`); false without a config (the quickstart). */
export function sharesState(file: string | undefined): boolean {
  return file !== undefined && readsSharedState(textOf(file));
}
