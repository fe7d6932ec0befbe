import { readApiKeys, type ApiKeyRecord } from '../access/index.js';
import { PortcullisError, type ErrorCode } from '../errors.js';
import { readDenyList } from '../state/index.js';
import type { DenyEntry } from '../trust/index.js';
import type { Logger } from '../telemetry/index.js';
import type { ReloadResult } from './reloader.js';

/** A store under dataDir that a CLI command rewrites and the running instance then re-reads: the deny list, the API keys. */
export interface StoreOnDisk<T> {
  /** "deny list", "API keys": for messages. */
  readonly what: string;
  /** The event logged when the store cannot be read. */
  readonly refusedEvent: string;
  readonly invalidCode: ErrorCode;
  read(): T[];
}

/**
 * Re-reads a store that a CLI command just wrote and hands it to `apply`,
 * which resolves once it is in force with a description of the effect. A
 * store that cannot be read leaves the one in force untouched and says why;
 * an apply that is not confirmed everywhere (a worker that did not answer)
 * is reported as a failure naming where.
 */
export async function applyStore<T>(store: StoreOnDisk<T>, apply: (entries: readonly T[]) => Promise<string>, log: Logger): Promise<ReloadResult> {
  let entries: T[];
  try {
    entries = store.read();
  } catch (err) {
    const code = err instanceof PortcullisError ? err.code : store.invalidCode;
    log.error({ event: store.refusedEvent, code, error: (err as Error).message }, `${store.what} not applied; the previous one stays in force`);
    return { ok: false, code, message: (err as Error).message };
  }
  try {
    return { ok: true, message: `${store.what} applied (${entries.length} entr${entries.length === 1 ? 'y' : 'ies'}): ${await apply(entries)}` };
  } catch (err) {
    const code = err instanceof PortcullisError ? err.code : 'PCL_WORKER_FAILED';
    return { ok: false, code, message: `${store.what} ${(err as Error).message}` };
  }
}

export const denyListStore = (dataDir: string): StoreOnDisk<DenyEntry> => ({ what: 'deny list', refusedEvent: 'deny_list_refused', invalidCode: 'PCL_DENY_LIST_INVALID', read: () => readDenyList(dataDir) });

export const apiKeyStore = (dataDir: string): StoreOnDisk<ApiKeyRecord> => ({ what: 'API keys', refusedEvent: 'api_keys_refused', invalidCode: 'PCL_API_KEYS_INVALID', read: () => readApiKeys(dataDir) });
