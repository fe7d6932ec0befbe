import type { RedisLink } from './redis-link.js';

/**
 * The fleet registry in Redis: every instance of a cluster keeps a record of
 * itself there, rewritten by its heartbeat, which Redis forgets when the
 * heartbeats stop (the record's TTL) and which a clean stop removes.
 *
 *   pcl:<cluster>:fleet:instance:<id>   the record (JSON), expiring after recordTtlMs
 *   pcl:<cluster>:fleet:instances       sorted set of the ids, scored by the writer's clock at its last heartbeat
 *
 * The record's TTL decides who is in the fleet; the set only finds the
 * records (no SCAN over the keyspace): an id whose record is gone is dropped
 * from it by the next reader.
 */

/** How often an instance rewrites its record. */
export const heartbeatMs = 5_000;
/** A record outlives its last heartbeat by this long: three missed heartbeats and the instance is gone from the fleet. */
export const recordTtlMs = 3 * heartbeatMs;
/** The most instances one read returns: a bound on the reply, far above any real cluster. */
const maxFleetSize = 1_000;
/** Ids still in the set this long after their last heartbeat are dropped by writers too, whatever the clocks say. */
const staleIndexMs = 3_600_000;

/** Increase when a field changes meaning; readers skip records of another schema. */
export const fleetSchema = 1;

/** A certificate a site serves, as the config in force provisioned it. */
export interface ServedCertificate {
  readonly site: string;
  /** Upper-case hex, as `openssl x509 -serial` and the logs print it. */
  readonly serial: string;
  readonly notAfter: string;
  /** "ECDSA P-256", "RSA 2048" … */
  readonly key: string;
}

/** How the last reload ended; null in a record until the first reload. */
export interface ReloadOutcomeRecord {
  readonly ok: boolean;
  /** The PCL_ code of a refused reload; null when it was applied. */
  readonly code: string | null;
  readonly message: string;
  /** What asked for it: SIGHUP, control socket, … */
  readonly trigger: string;
  readonly at: string;
}

/** One instance as it describes itself in the registry (and to `portcullis status` over its control socket). */
export interface InstanceRecord {
  readonly schema: number;
  /** hostname/pid/random: unique per process, also when containers all run as PID 1. */
  readonly id: string;
  readonly hostname: string;
  readonly pid: number;
  /** Portcullis (package.json) and Node versions. */
  readonly version: string;
  readonly node: string;
  /** The cluster's name (state.cluster); null with the memory backend. */
  readonly cluster: string | null;
  readonly startedAt: string;
  readonly uptimeSeconds: number;
  /** When the instance wrote this record (its clock). */
  readonly heartbeatAt: string;
  /** The config generation in force: 1 at start, one more with each applied reload. */
  readonly generation: number;
  /** What identifies the config in force (`configDigest`): instances serving the same config have the same. */
  readonly configDigest: string;
  /** When the config in force was accepted. */
  readonly configAppliedAt: string;
  readonly lastReload: ReloadOutcomeRecord | null;
  readonly certificates: readonly ServedCertificate[];
  /** Where it serves ("127.0.0.1:8443"); null for a listener not configured. */
  readonly listeners: { readonly https: string; readonly http: string | null; readonly admin: string | null };
  /** Worker processes; null when the control plane's own process serves. */
  readonly workers: number | null;
}

const indexKey = (link: RedisLink) => link.key('fleet', 'instances');
const recordKey = (link: RedisLink, id: string) => link.key('fleet', 'instance', id);

/** Writes (or refreshes) `record` with its TTL. Rejects when Redis does not take it (the caller retries at its next heartbeat). */
export async function writeInstanceRecord(link: RedisLink, record: InstanceRecord): Promise<void> {
  const now = Date.now();
  await link.redis
    .multi()
    .set(recordKey(link, record.id), JSON.stringify(record), 'PX', recordTtlMs)
    .zadd(indexKey(link), now, record.id)
    .zremrangebyscore(indexKey(link), '-inf', now - staleIndexMs)
    .exec()
    .then((replies) => {
      const failed = replies?.find(([err]) => err !== null)?.[0];
      if (failed) throw failed;
    });
}

/** Removes an instance's record at once (a clean stop). */
export async function removeInstanceRecord(link: RedisLink, id: string): Promise<void> {
  await link.redis.multi().del(recordKey(link, id)).zrem(indexKey(link), id).exec();
}

/** The fleet as Redis knows it now: the live instances' records, and the ids of records this version cannot read (another schema, damaged). */
export interface FleetRead {
  readonly instances: readonly InstanceRecord[];
  readonly unreadable: readonly string[];
}

function parseRecord(text: string): InstanceRecord | null {
  try {
    const value = JSON.parse(text) as Partial<InstanceRecord> | null;
    if (value?.schema !== fleetSchema || typeof value.id !== 'string' || typeof value.configDigest !== 'string' || !Array.isArray(value.certificates)) return null;
    return value as InstanceRecord;
  } catch {
    return null;
  }
}

/**
 * Reads every live instance's record (at most maxFleetSize), ordered by id,
 * and drops from the index the ids whose record expired. Rejects when Redis
 * does not answer. Safe to call from any process of the cluster, any number
 * of times: it only reads, and removes index entries of records that are gone
 * (a live instance adds its own back at its next heartbeat).
 */
export async function readFleet(link: RedisLink): Promise<FleetRead> {
  const ids = await link.redis.zrange(indexKey(link), 0, maxFleetSize - 1);
  if (ids.length === 0) return { instances: [], unreadable: [] };
  const texts = await link.redis.mget(...ids.map((id) => recordKey(link, id)));
  const gone = ids.filter((_, i) => texts[i] === null);
  if (gone.length > 0) await link.redis.zrem(indexKey(link), ...gone);
  const instances: InstanceRecord[] = [];
  const unreadable: string[] = [];
  texts.forEach((text, i) => {
    if (text === null || text === undefined) return;
    const record = parseRecord(text);
    if (record) instances.push(record);
    else unreadable.push(ids[i] as string);
  });
  instances.sort((a, b) => a.id.localeCompare(b.id));
  return { instances, unreadable };
}
