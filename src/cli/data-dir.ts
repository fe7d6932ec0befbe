import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import YAML from 'yaml';

/**
 * The dataDir a config names, read without validating the rest: a broken
 * config must still reach the running instance, which then reports why it
 * refuses it.
 */
export function dataDirOf(file: string | undefined): string {
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
