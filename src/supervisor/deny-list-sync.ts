import { PortcullisError } from '../errors.js';
import { readDenyList } from '../state/index.js';
import type { Logger } from '../telemetry/index.js';
import type { DenyEntry } from '../trust/index.js';
import type { ReloadResult } from './reloader.js';

/**
 * Re-reads the deny list that `portcullis deny` just wrote and hands it to
 * `apply`, whose answer describes the effect. A list that cannot be read
 * leaves the one in force untouched and says why.
 */
export function applyDenyList(dataDir: string, apply: (entries: readonly DenyEntry[]) => string, log: Logger): ReloadResult {
  let entries: DenyEntry[];
  try {
    entries = readDenyList(dataDir);
  } catch (err) {
    const code = err instanceof PortcullisError ? err.code : 'PCL_DENY_LIST_INVALID';
    log.error({ event: 'deny_list_refused', code, error: (err as Error).message }, 'deny list not applied; the previous one stays in force');
    return { ok: false, code, message: (err as Error).message };
  }
  return { ok: true, message: `deny list applied (${entries.length} entr${entries.length === 1 ? 'y' : 'ies'}): ${apply(entries)}` };
}
