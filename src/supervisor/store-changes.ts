import type { ApiKeyRecord } from '../access/index.js';
import { denyEntry, denyKey, type DenyEntry } from '../trust/index.js';

/**
 * Changes a CLI command could not save under dataDir (full disk, read-only
 * filesystem) and hands to the running instance instead, over the control
 * socket. Only changes that tighten are ever sent this way — a deny entry
 * added, a key revoked: applied unsaved, they fail closed; anything that
 * loosens or creates a credential is refused by the command when it cannot
 * be saved.
 */

/** `{"deny": <entry>}`: a certificate `portcullis deny add` could not save. */
export interface DenyChange {
  readonly deny: DenyEntry;
}

/** `{"revoke": {"id", "at"}}`: a key `portcullis keys revoke` could not save. */
export interface KeyRevocation {
  readonly revoke: { readonly id: string; readonly at: string };
}

/** How a store's unsaved changes are laid over what its file holds. */
export interface ChangeOps<T, C> {
  /** Two changes with one key are the same change. */
  key(change: C): string;
  /** Whether `entries` (as read from the file) already hold the change: then it need not be kept in memory. */
  carries(entries: readonly T[], change: C): boolean;
  /** `entries` with the change applied; never removes or widens anything. */
  apply(entries: readonly T[], change: C): T[];
  /** For logs and answers: "deny sha256:AB:…", "revoke API key 3fa1c2d4e5f6". */
  describe(change: C): string;
}

export const denyChanges: ChangeOps<DenyEntry, DenyChange> = {
  key: (c) => denyKey(c.deny),
  carries: (entries, c) => entries.some((e) => denyKey(e) === denyKey(c.deny)),
  apply: (entries, c) => (entries.some((e) => denyKey(e) === denyKey(c.deny)) ? [...entries] : [...entries, c.deny]),
  describe: (c) => `deny ${'fingerprint' in c.deny ? c.deny.fingerprint : `serial ${c.deny.serial} issuer "${c.deny.issuer}"`}`,
};

export const keyRevocations: ChangeOps<ApiKeyRecord, KeyRevocation> = {
  key: (c) => c.revoke.id,
  // a key the file no longer holds cannot be used either: nothing left to keep
  carries: (records, c) => !records.some((r) => r.id === c.revoke.id && r.revokedAt === null),
  apply: (records, c) => records.map((r) => (r.id === c.revoke.id && r.revokedAt === null ? { ...r, revokedAt: c.revoke.at } : r)),
  describe: (c) => `revoke API key ${c.revoke.id}`,
};

export const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isTime = (v: unknown): v is string => typeof v === 'string' && v.length <= 40 && !Number.isNaN(Date.parse(v));

/** The name of a key of `o` that `allowed` does not list, or null. */
export function unknownKey(o: Record<string, unknown>, allowed: readonly string[]): string | null {
  return Object.keys(o).find((k) => !allowed.includes(k)) ?? null;
}

/**
 * Validates the `unpersisted` part of a `deny-list` control request; returns
 * the change, or a message saying what is wrong. Strict: anything but the
 * documented shape is refused, so a confused or hostile local client cannot
 * slip something else into the deny list.
 */
export function parseDenyChange(raw: unknown): DenyChange | string {
  const shape = '{"deny": {"fingerprint": "sha256:…" | "serial": "HEX", "issuer": "DN", "note": string|null, "addedAt": ISO time}}';
  if (!isObject(raw) || unknownKey(raw, ['deny']) !== null || !isObject(raw.deny)) return `unpersisted must be ${shape}`;
  const entry = parseDenyEntry(raw.deny, 'unpersisted.deny', shape);
  return typeof entry === 'string' ? entry : { deny: entry };
}

/** Validates a deny entry carried by a control request at `path` ("unpersisted.deny"); `shape` is the request's, for the message. */
export function parseDenyEntry(e: Record<string, unknown>, path: string, shape: string): DenyEntry | string {
  const extra = unknownKey(e, ['fingerprint', 'serial', 'issuer', 'note', 'addedAt']);
  if (extra !== null) return `${path}.${extra} is not a field of a deny entry (${shape})`;
  for (const field of ['fingerprint', 'serial', 'issuer'] as const) {
    if (e[field] !== undefined && (typeof e[field] !== 'string' || e[field].length > 1024)) return `${path}.${field} must be a string`;
  }
  if (e.note !== null && (typeof e.note !== 'string' || e.note.length > 1024)) return `${path}.note must be a string (at most 1024 characters) or null`;
  if (!isTime(e.addedAt)) return `${path}.addedAt must be an ISO time`;
  const entry = denyEntry({ fingerprint: e.fingerprint as string | undefined, serial: e.serial as string | undefined, issuer: e.issuer as string | undefined }, e.note, new Date(e.addedAt));
  return typeof entry === 'string' ? `${path}: ${entry}` : entry;
}

/** Validates the `unpersisted` part of an `api-keys` control request: only a revocation. */
export function parseKeyRevocation(raw: unknown): KeyRevocation | string {
  const shape = '{"revoke": {"id": 12 hex digits, "at": ISO time}}';
  if (!isObject(raw) || unknownKey(raw, ['revoke']) !== null || !isObject(raw.revoke) || unknownKey(raw.revoke, ['id', 'at']) !== null) return `unpersisted must be ${shape}`;
  const { id, at } = raw.revoke;
  if (typeof id !== 'string' || !/^[0-9a-f]{12}$/.test(id)) return 'unpersisted.revoke.id must be a key id (12 hex digits)';
  if (!isTime(at)) return 'unpersisted.revoke.at must be an ISO time';
  return { revoke: { id, at: new Date(at).toISOString() } };
}
