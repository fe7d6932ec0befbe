import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import YAML from 'yaml';
import { resolveDataDir } from '../state/index.js';

/**
 * The dataDir a config names, read without validating the rest: a broken
 * config must still reach the running instance, which then reports why it
 * refuses it.
 */
export function dataDirOf(file: string | undefined): string {
  if (file === undefined) return resolveDataDir(process.cwd());
  let raw: unknown;
  try {
    raw = YAML.parse(readFileSync(file, 'utf8'));
  } catch {
    raw = undefined;
  }
  const value = (raw as { dataDir?: unknown } | undefined)?.dataDir;
  return typeof value === 'string' ? resolveDataDir(dirname(resolve(file)), value) : resolveDataDir(dirname(resolve(file)));
}
