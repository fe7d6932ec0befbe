import { execAll, type RedisLink } from '../state/index.js';
import { denyKey, type DenyEntry } from './deny-list.js';
import { storedDenyEntry } from './deny-list-file.js';

/**
 * The deny list of a cluster (`state.backend: redis`), as Redis keeps it:
 *
 *   pcl:<cluster>:deny-list          hash: denyKey → the entry (JSON, as the file keeps it)
 *   pcl:<cluster>:deny-list:removed  hash: denyKey → addedAt of the entry removed last
 *
 * One field per entry, so that concurrent adds from several instances all
 * survive (nothing rewrites the list as a whole), and an add never replaces
 * an entry already there (HSETNX: the first note and time stay). A removal
 * is an operation of its own that leaves a marker, which is how an instance
 * that missed it (down, or cut off from Redis) tells a stale copy of the
 * removed entry from one added since: a copy whose addedAt is not later than
 * the marker's is the removed one, and is not written back. An add made by a
 * command ("explicit") is written whatever the marker says: a denial is
 * never lost, even when a removal elsewhere raced it.
 */

export interface SharedDenyList {
  readonly entries: DenyEntry[];
  /** Whether `entry` (a copy an instance holds) is a version of an entry removed from the cluster since. */
  stale(entry: DenyEntry): boolean;
  /** Fields that do not hold a usable entry, with why: logged, never applied. */
  readonly invalid: readonly { readonly key: string; readonly problem: string }[];
}

// KEYS[1]: entries, KEYS[2]: removal markers; ARGV: field, entry JSON, its addedAt, "1" for an explicit add
const addScript = `if ARGV[4] ~= '1' then
  local removed = redis.call('HGET', KEYS[2], ARGV[1])
  if removed and removed >= ARGV[3] then return 0 end
end
return redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])`;

const keysOf = (link: RedisLink) => [link.key('deny-list'), link.key('deny-list', 'removed')] as const;

/** Reads the cluster's deny list in full (one transaction: entries and removal markers seen at one instant). */
export async function readSharedDenyList(link: RedisLink): Promise<SharedDenyList> {
  const [entriesKey, removedKey] = keysOf(link);
  const [fields, removed] = (await execAll(link.redis.multi().hgetall(entriesKey).hgetall(removedKey))) as [Record<string, string>, Record<string, string>];
  const entries: DenyEntry[] = [];
  const invalid: { key: string; problem: string }[] = [];
  for (const [field, text] of Object.entries(fields)) {
    let entry: DenyEntry | string;
    try {
      const raw = JSON.parse(text) as unknown;
      entry = typeof raw === 'object' && raw !== null && !Array.isArray(raw) ? storedDenyEntry(raw as Record<string, unknown>) : 'not a JSON object';
    } catch {
      entry = 'not JSON';
    }
    if (typeof entry !== 'string' && denyKey(entry) !== field) entry = `the entry's key is ${denyKey(entry)}`;
    if (typeof entry === 'string') invalid.push({ key: field, problem: `${entriesKey} field ${field}: ${entry}` });
    else entries.push(entry);
  }
  return { entries, invalid, stale: (e) => (removed[denyKey(e)] ?? '') >= e.addedAt };
}

/**
 * Adds entries, each on its own field; an entry already there stays as it
 * is. `explicit` entries are written whatever the removal markers say; the
 * others (copies an instance repairs the cluster with) only when no later
 * removal marks them stale. Resolves with how many fields were new.
 */
export async function addSharedDenyEntries(link: RedisLink, adds: readonly { readonly entry: DenyEntry; readonly explicit: boolean }[]): Promise<number> {
  if (adds.length === 0) return 0;
  const [entriesKey, removedKey] = keysOf(link);
  const multi = link.redis.multi();
  for (const { entry, explicit } of adds) multi.eval(addScript, 2, entriesKey, removedKey, denyKey(entry), JSON.stringify(entry), entry.addedAt, explicit ? '1' : '0');
  const added = await execAll(multi);
  return added.filter((n) => n === 1).length;
}

/** Removes an entry from the cluster's list and marks it removed (`entry.addedAt`: the version removed). */
export async function removeSharedDenyEntry(link: RedisLink, entry: DenyEntry): Promise<void> {
  const [entriesKey, removedKey] = keysOf(link);
  const key = denyKey(entry);
  await execAll(link.redis.multi().hdel(entriesKey, key).hset(removedKey, key, entry.addedAt));
}
