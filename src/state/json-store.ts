import { readFileSync } from 'node:fs';
import { PortcullisError, type ErrorCode } from '../errors.js';

/**
 * Reads a version-1 JSON store under dataDir (`{"version":1, "<field>":[…]}`)
 * and returns its list; none yet is an empty list. A file that cannot be
 * used is an error with `code`, never an empty list: the caller's store
 * (deny list, API keys) would silently lose its meaning. `shape` tells the
 * operator what the file should hold.
 */
export function readStoreList(path: string, field: string, code: ErrorCode, shape: string): Record<string, unknown>[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new PortcullisError(code, `cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); check its permissions`, { cause: err });
  }
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(text) as Record<string, unknown>;
  } catch (err) {
    throw new PortcullisError(code, `${path} is not JSON; restore it from a backup or fix it by hand (${shape})`, { cause: err });
  }
  const list = raw?.[field];
  if (raw?.version !== 1 || !Array.isArray(list)) throw new PortcullisError(code, `${path} is not a version 1 store ({"version":1,"${field}":[…]}: ${shape})`);
  const notObject = list.findIndex((e) => typeof e !== 'object' || e === null || Array.isArray(e));
  if (notObject >= 0) throw new PortcullisError(code, `${path} ${field}[${notObject}] is not an object (${shape}); fix or remove that entry`);
  return list as Record<string, unknown>[];
}
