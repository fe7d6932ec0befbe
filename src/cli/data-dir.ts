import { readFileSync } from 'node:fs';
import { readLeniently } from '../config/index.js';
import { resolveDataDir } from '../state/index.js';

/**
 * The dataDir a config names, read without validating the rest: a broken
 * config must still reach the running instance, which then reports why it
 * refuses it. Without a config, the default under the working directory.
 */
export function dataDirOf(file: string | undefined): string {
  if (file === undefined) return resolveDataDir(process.cwd());
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    // unreadable: the default dataDir next to it; the strict load says why
  }
  return readLeniently(text, file).dataDir;
}
