import { storedApiKey, type ApiKeyRecord } from '../access/index.js';
import type { DenyEntry } from '../trust/index.js';
import { isObject, parseDenyEntry, unknownKey } from './store-changes.js';

/**
 * What a command changed in a store, carried by its control request
 * (`edit`) besides the file it wrote. An instance that shares its stores
 * with a cluster (`state.backend: redis`) tells the cluster exactly this
 * change: its local file is a copy that the cluster's changes rewrite too,
 * so the file alone cannot say what the command did (a removal above all).
 * With the memory backend the file is the store, and `edit` is ignored.
 */

/** `{"add": <entry>}` (deny add) or `{"remove": <entry>}` (deny remove). */
export type DenyEdit = { readonly add: DenyEntry } | { readonly remove: DenyEntry };

/** `{"keys": [<record>, …]}`: the records keys create, revoke or rotate wrote (hashes only, as the file keeps them). */
export interface KeyEdit {
  readonly keys: readonly ApiKeyRecord[];
}

/** A rotation writes two records; nothing writes more. */
const maxKeyRecords = 4;
const recordFields = ['id', 'name', 'hash', 'routes', 'createdAt', 'expiresAt', 'revokedAt', 'bindCert', 'bindUri', 'rotatedTo'];

/** Validates the `edit` of a `deny-list` control request, strictly; returns it, or what is wrong. */
export function parseDenyEdit(raw: unknown): DenyEdit | string {
  const shape = '{"add" | "remove": {"fingerprint": "sha256:…" | "serial": "HEX", "issuer": "DN", "note": string|null, "addedAt": ISO time}}';
  const keys = isObject(raw) ? Object.keys(raw) : [];
  const op = keys[0];
  if (!isObject(raw) || keys.length !== 1 || (op !== 'add' && op !== 'remove') || !isObject(raw[op])) return `edit must be ${shape}`;
  const entry = parseDenyEntry(raw[op], `edit.${op}`, shape);
  if (typeof entry === 'string') return entry;
  return op === 'add' ? { add: entry } : { remove: entry };
}

/** Validates the `edit` of an `api-keys` control request, strictly; returns it, or what is wrong. */
export function parseKeyEdit(raw: unknown): KeyEdit | string {
  const shape = `{"keys": [at most ${maxKeyRecords} API key records, as api-keys.json holds them]}`;
  if (!isObject(raw) || unknownKey(raw, ['keys']) !== null || !Array.isArray(raw.keys) || raw.keys.length > maxKeyRecords) return `edit must be ${shape}`;
  const records: ApiKeyRecord[] = [];
  for (const [i, r] of (raw.keys as unknown[]).entries()) {
    if (!isObject(r)) return `edit.keys[${i}] is not an object (${shape})`;
    const extra = unknownKey(r, recordFields);
    if (extra !== null) return `edit.keys[${i}].${extra} is not a field of an API key record`;
    const tooLong = recordFields.find((f) => typeof r[f] === 'string' && r[f].length > 1024);
    if (tooLong !== undefined) return `edit.keys[${i}].${tooLong} is longer than 1024 characters`;
    const record = storedApiKey(r);
    if (typeof record === 'string') return `edit.keys[${i}]: ${record}`;
    records.push(record);
  }
  return { keys: records };
}
