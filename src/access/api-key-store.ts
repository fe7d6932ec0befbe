import { PortcullisError } from '../errors.js';
import { apiKeysFile, readStoreList, writeFileAtomic } from '../state/index.js';

/** One API key as the store keeps it: never the key, only its hash. */
export interface ApiKeyRecord {
  readonly id: string;
  readonly name: string;
  /** Hex SHA-256 of the key. */
  readonly hash: string;
  /** Route paths the key may be used on; null: every route that takes keys. */
  readonly routes: readonly string[] | null;
  /** ISO times. */
  readonly createdAt: string;
  readonly expiresAt: string | null;
  readonly revokedAt: string | null;
  /** Bound keys are refused on connections without this client certificate ("sha256:" + hex, as identities print it). */
  readonly bindCert: string | null;
  /** … or without a client certificate carrying this URI SAN. */
  readonly bindUri: string | null;
  /** Set on a rotated key: the id of its successor. */
  readonly rotatedTo: string | null;
}

const isTime = (v: unknown): v is string => typeof v === 'string' && !Number.isNaN(Date.parse(v));
const isId = (v: unknown): v is string => typeof v === 'string' && /^[0-9a-f]{12}$/.test(v);
const optional = (v: unknown, ok: (x: unknown) => boolean) => v === null || v === undefined || ok(v);

function check(e: Record<string, unknown>): string | null {
  if (!isId(e.id)) return 'id is not 12 hex digits';
  if (typeof e.hash !== 'string' || !/^[0-9a-f]{64}$/.test(e.hash)) return 'hash is not a hex SHA-256';
  if (typeof e.name !== 'string') return 'name is missing';
  if (!isTime(e.createdAt)) return 'createdAt is not a time';
  if (!optional(e.expiresAt, isTime) || !optional(e.revokedAt, isTime)) return 'expiresAt/revokedAt is not a time';
  if (!optional(e.routes, (r) => Array.isArray(r) && r.every((p) => typeof p === 'string'))) return 'routes is not a list of paths';
  if (!optional(e.bindCert, (v) => typeof v === 'string') || !optional(e.bindUri, (v) => typeof v === 'string')) return 'bindCert/bindUri is not a string';
  if (!optional(e.rotatedTo, isId)) return 'rotatedTo is not a key id (12 hex digits)';
  return null;
}

/** One record as a store keeps it (the file, the cluster's Redis): the record, or what is wrong with it. */
export function storedApiKey(e: Record<string, unknown>): ApiKeyRecord | string {
  const problem = check(e);
  if (problem) return problem;
  return {
    id: e.id as string,
    name: e.name as string,
    hash: e.hash as string,
    routes: (e.routes as string[] | undefined) ?? null,
    createdAt: e.createdAt as string,
    expiresAt: (e.expiresAt as string | undefined) ?? null,
    revokedAt: (e.revokedAt as string | undefined) ?? null,
    bindCert: (e.bindCert as string | undefined) ?? null,
    bindUri: (e.bindUri as string | undefined) ?? null,
    rotatedTo: (e.rotatedTo as string | undefined) ?? null,
  };
}

/**
 * Reads the key store; none yet is no keys. A file that cannot be used is an
 * error (PCL_API_KEYS_INVALID), never an empty store quietly: every key would
 * then be refused without anyone knowing why.
 */
export function readApiKeys(dataDir: string): ApiKeyRecord[] {
  const path = apiKeysFile(dataDir);
  const keys = readStoreList(path, 'keys', 'PCL_API_KEYS_INVALID', 'it holds only key hashes: keys cannot be recovered from it');
  const seen = new Set<unknown>();
  return keys.map((e, i) => {
    // two records with one id: which one a presented key meets would depend on the order
    const record = storedApiKey(e);
    const problem = typeof record === 'string' ? record : seen.has(e.id) ? `id ${e.id as string} appears twice` : null;
    if (problem !== null) throw new PortcullisError('PCL_API_KEYS_INVALID', `${path} keys[${i}]: ${problem}; fix or remove that entry`);
    seen.add(e.id);
    return record as ApiKeyRecord;
  });
}

export function writeApiKeys(dataDir: string, keys: readonly ApiKeyRecord[]): void {
  writeFileAtomic(apiKeysFile(dataDir), `${JSON.stringify({ version: 1, keys }, null, 2)}\n`, 0o600);
}
