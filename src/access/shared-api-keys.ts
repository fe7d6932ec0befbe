import { execAll, type RedisLink } from '../state/index.js';
import { storedApiKey, type ApiKeyRecord } from './api-key-store.js';

/**
 * The API keys of a cluster (`state.backend: redis`), as Redis keeps them:
 *
 *   pcl:<cluster>:api-keys          hash: id → the record as first written (JSON, as the file keeps it)
 *   pcl:<cluster>:api-keys:revoked  hash: id → revokedAt
 *   pcl:<cluster>:api-keys:rotated  hash: id → {"rotatedTo", "expiresAt"} of its rotation
 *
 * Every field is written once (HSETNX) and nothing is ever deleted, and what
 * a record can change into only tightens it: a revocation, a rotation that
 * ends it sooner. So writes from any number of instances, in any order,
 * after any outage, converge on one store, and none of them loses a
 * revocation another made (`joinApiKeys` is how two copies of a record
 * meet). Only hashes of keys are stored, as in the file.
 */

export interface SharedApiKeys {
  readonly records: ApiKeyRecord[];
  /** Fields that do not hold a usable record, with why: logged, never applied. */
  readonly invalid: readonly { readonly key: string; readonly problem: string }[];
}

/** The earlier of two times, where null is "none" (not revoked, never expires). */
function earliest(a: string | null, b: string | null): string | null {
  if (a === null) return b;
  if (b === null) return a;
  return Date.parse(b) < Date.parse(a) ? b : a;
}

/** Two copies of one key's record, joined: revoked if either is, ending at the earlier expiry, rotated if either is. */
export function joinApiKeys(a: ApiKeyRecord, b: ApiKeyRecord): ApiKeyRecord {
  return { ...a, revokedAt: earliest(a.revokedAt, b.revokedAt), expiresAt: earliest(a.expiresAt, b.expiresAt), rotatedTo: a.rotatedTo ?? b.rotatedTo };
}

const keysOf = (link: RedisLink) => [link.key('api-keys'), link.key('api-keys', 'revoked'), link.key('api-keys', 'rotated')] as const;

function parsed(text: string): Record<string, unknown> | null {
  try {
    const raw = JSON.parse(text) as unknown;
    return typeof raw === 'object' && raw !== null && !Array.isArray(raw) ? (raw as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/** A rotation as stored, or null when it is not one. */
function rotationOf(text: string | undefined): { rotatedTo: string; expiresAt: string | null } | null {
  const r = text === undefined ? null : parsed(text);
  if (!r || typeof r.rotatedTo !== 'string' || !/^[0-9a-f]{12}$/.test(r.rotatedTo)) return null;
  if (r.expiresAt !== null && (typeof r.expiresAt !== 'string' || Number.isNaN(Date.parse(r.expiresAt)))) return null;
  return { rotatedTo: r.rotatedTo, expiresAt: r.expiresAt };
}

/** Reads the cluster's API keys in full (one transaction), each record with its revocation and rotation. */
export async function readSharedApiKeys(link: RedisLink): Promise<SharedApiKeys> {
  const [baseKey, revokedKey, rotatedKey] = keysOf(link);
  const [bases, revoked, rotated] = (await execAll(link.redis.multi().hgetall(baseKey).hgetall(revokedKey).hgetall(rotatedKey))) as [Record<string, string>, Record<string, string>, Record<string, string>];
  const records: ApiKeyRecord[] = [];
  const invalid: { key: string; problem: string }[] = [];
  for (const [id, text] of Object.entries(bases)) {
    const raw = parsed(text);
    let record = raw ? storedApiKey(raw) : 'not a JSON object';
    if (typeof record !== 'string' && record.id !== id) record = `the record's id is ${record.id}`;
    if (typeof record === 'string') {
      invalid.push({ key: id, problem: `${baseKey} field ${id}: ${record}` });
      continue;
    }
    let revokedAt = revoked[id] ?? null;
    if (revokedAt !== null && Number.isNaN(Date.parse(revokedAt))) {
      // a revocation that cannot be read still revokes: refusing the key is the safe side
      invalid.push({ key: id, problem: `${revokedKey} field ${id}: not a time (the key is refused)` });
      revokedAt = new Date(0).toISOString();
    }
    const rotation = rotationOf(rotated[id]);
    if (rotated[id] !== undefined && rotation === null) invalid.push({ key: id, problem: `${rotatedKey} field ${id}: not {"rotatedTo": key id, "expiresAt": time or null}` });
    records.push(joinApiKeys(record, { ...record, revokedAt, expiresAt: rotation?.expiresAt ?? record.expiresAt, rotatedTo: rotation?.rotatedTo ?? null }));
  }
  return { records, invalid };
}

/**
 * Writes records into the cluster's store: each part that is not there yet
 * (the record itself, its revocation, its rotation), none overwritten.
 */
export async function putSharedApiKeys(link: RedisLink, records: readonly ApiKeyRecord[]): Promise<void> {
  if (records.length === 0) return;
  const [baseKey, revokedKey, rotatedKey] = keysOf(link);
  const multi = link.redis.multi();
  for (const r of records) {
    multi.hsetnx(baseKey, r.id, JSON.stringify(r));
    if (r.revokedAt !== null) multi.hsetnx(revokedKey, r.id, r.revokedAt);
    if (r.rotatedTo !== null) multi.hsetnx(rotatedKey, r.id, JSON.stringify({ rotatedTo: r.rotatedTo, expiresAt: r.expiresAt }));
  }
  await execAll(multi);
}
