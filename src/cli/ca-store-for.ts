import { readStateSettings } from '../config/index.js';
import { createLogger } from '../observe/index.js';
import { CaStore, clusterCaReplica } from '../pki/index.js';
import { RedisLink } from '../state/index.js';
import { dataDirOf } from './data-dir.js';

/**
 * Runs `fn` on the built-in CA of the config `file` (none: the default
 * dataDir's): with `state.backend: redis` the cluster's, through a
 * connection of this command's own (closed after) — every change holds the
 * cluster's lock and is recorded in Redis, and the running instances copy it
 * at once — else the one under dataDir/ca. Refuses (PCL_STATE_UNREACHABLE)
 * when the cluster's Redis does not answer, rather than change a local copy
 * the cluster would overwrite.
 */
export async function withCaStore<T>(file: string | undefined, opts: { intermediate?: boolean }, fn: (store: CaStore) => Promise<T>): Promise<T> {
  const dataDir = dataDirOf(file);
  const state = file === undefined ? null : readStateSettings(file);
  if (state?.backend !== 'redis') return fn(await CaStore.open(dataDir, { intermediate: opts.intermediate === true }));
  const log = createLogger('warn');
  const link = await RedisLink.open(state.redis, log);
  try {
    return await fn(await CaStore.open(dataDir, { intermediate: opts.intermediate === true, replica: clusterCaReplica(link, log) }));
  } finally {
    await link.close();
  }
}
