import type { Logger } from '../observe/index.js';
import { redisState, type RedisLink } from '../state/index.js';
import { CaReplica } from './ca-replica.js';

/** The channel a new generation of the cluster's CA is announced on. */
const channel = 'ca';

/**
 * The cluster's CA on its Redis (`state.backend: redis`): values and the
 * fenced lock of `redisState`, and announcements on the `ca` channel. An
 * announcement that fails (Redis went away right after the write) is sent
 * again once the connection is back.
 */
export function clusterCaReplica(link: RedisLink, log: Logger): CaReplica {
  let unannounced: number | null = null;
  const announce = async (generation: number) => {
    try {
      await link.publish(channel, String(generation));
      if (unannounced !== null && unannounced <= generation) unannounced = null;
    } catch (err) {
      unannounced = Math.max(unannounced ?? 0, generation);
      log.warn({ event: 'ca_change_unannounced', generation, error: (err as Error).message }, `the built-in CA's change ${generation} is recorded in Redis but could not be announced (${(err as Error).message}); announced again once Redis is back`);
    }
  };
  link.onLink((up) => {
    if (up && unannounced !== null) void announce(unannounced);
  });
  return new CaReplica(redisState(link), announce, log);
}

/**
 * Keeps the local copy `dir` of the cluster's CA current: re-read once
 * subscribed, at every announcement and after every outage (announcements sent meanwhile are
 * lost). `changed` gets the names of the files rewritten; failures are
 * logged and the local copy keeps serving. Returns the function that stops.
 */
export async function followClusterCa(link: RedisLink, replica: CaReplica, dir: string, log: Logger, changed: (files: readonly string[]) => void): Promise<() => void> {
  const refresh = () =>
    replica.refresh(dir).then(
      (pulled) => {
        if (pulled.changed.length === 0) return;
        log.info({ event: 'ca_synced', generation: pulled.generation, files: pulled.changed }, `the built-in CA's change ${pulled.generation} taken from the cluster (${pulled.changed.join(', ')})`);
        changed(pulled.changed);
      },
      (err: Error) => log.error({ event: 'ca_sync_failed', error: err.message }, `copying the built-in CA from the cluster failed (${err.message}); the local copy keeps serving, and the next announcement or reconnection tries again`),
    );
  const unsubscribe = await link.subscribe(channel, () => void refresh());
  const unlink = link.onLink((up) => {
    if (up) void refresh();
  });
  // what was announced before the subscription
  await refresh();
  return () => {
    unsubscribe();
    unlink();
  };
}
