import type { Registry } from 'prom-client';
import { joinApiKeys, putSharedApiKeys, readApiKeys, readSharedApiKeys, writeApiKeys, type ApiKeyRecord } from '../access/index.js';
import { StateBackendMetrics, type Logger } from '../observe/index.js';
import { apiKeysFile, denyListFile, type RedisLink } from '../state/index.js';
import { addSharedDenyEntries, denyKey, readDenyList, readSharedDenyList, removeSharedDenyEntry, writeDenyList, type DenyEntry } from '../trust/index.js';
import type { ReloadResult } from './reloader.js';
import { denyChanges, type DenyChange, type KeyRevocation } from './store-changes.js';
import type { DenyEdit, KeyEdit } from './store-edits.js';
import { SharedStoreSync, type ApplyStore, type SharedStore } from './shared-store-sync.js';

/**
 * What the control plane asks of a store on a control request: the deny
 * list and the API keys, kept in step with the file under dataDir
 * (`StoreSync`, the memory backend) or with the cluster (`SharedStores`).
 */
export interface StoreKeeper<C, E> {
  sync(change: C | null, edit: E | null): Promise<ReloadResult>;
  retry(): Promise<void>;
  stop(): Promise<void>;
}

/** The deny list shared by a cluster: one field per entry, removals marked (trust/shared-deny-list.ts). */
export function sharedDenyList(dataDir: () => string): SharedStore<DenyEntry> {
  return {
    what: 'deny list',
    label: 'deny_list',
    channel: 'deny-list',
    path: () => denyListFile(dataDir()),
    key: denyKey,
    describe: (e) => denyChanges.describe({ deny: e }),
    read: readSharedDenyList,
    write: async (link, writes) => void (await addSharedDenyEntries(link, writes)),
    // one certificate, one entry: the cluster's note and time stay
    join: (remote) => remote,
    remove: removeSharedDenyEntry,
    readLocal: () => readDenyList(dataDir()),
    writeLocal: (entries) => writeDenyList(dataDir(), entries),
  };
}

/** The API keys shared by a cluster: records that only tighten (access/shared-api-keys.ts). */
export function sharedApiKeys(dataDir: () => string): SharedStore<ApiKeyRecord> {
  return {
    what: 'API keys',
    label: 'api_keys',
    channel: 'api-keys',
    path: () => apiKeysFile(dataDir()),
    key: (r) => r.id,
    describe: (r) => `API key ${r.id}${r.revokedAt ? ' (revoked)' : ''}`,
    read: async (link) => {
      const { records, invalid } = await readSharedApiKeys(link);
      return { entries: records, invalid, stale: () => false };
    },
    write: (link, writes) => putSharedApiKeys(link, writes.map((w) => w.entry)),
    join: joinApiKeys,
    readLocal: () => readApiKeys(dataDir()),
    writeLocal: (records) => writeApiKeys(dataDir(), records),
  };
}

/**
 * The deny list and the API keys of an instance in a cluster
 * (`state.backend: redis`), each kept in step with Redis by a
 * SharedStoreSync and put in force through the data plane; with the
 * gauges of the control plane's link (`portcullis_state_backend_up`,
 * `portcullis_state_changes_queued`).
 */
export class SharedStores {
  readonly denyList: StoreKeeper<DenyChange, DenyEdit>;
  readonly apiKeys: StoreKeeper<KeyRevocation, KeyEdit>;
  readonly #syncs: readonly { start(): Promise<void>; stop(): Promise<void> }[];

  constructor(
    link: RedisLink,
    dataDir: () => string,
    initial: { readonly denyList: readonly DenyEntry[]; readonly apiKeys: readonly ApiKeyRecord[] },
    apply: { readonly denyList: ApplyStore<DenyEntry>; readonly apiKeys: ApplyStore<ApiKeyRecord> },
    registry: Registry,
    log: Logger,
  ) {
    const deny = new SharedStoreSync(sharedDenyList(dataDir), link, initial.denyList, apply.denyList, log);
    const keys = new SharedStoreSync(sharedApiKeys(dataDir), link, initial.apiKeys, apply.apiKeys, log);
    this.#syncs = [deny, keys];
    const metrics = new StateBackendMetrics(registry);
    metrics.watchLink(() => link.up);
    metrics.watchQueue('deny_list', () => deny.queued);
    metrics.watchQueue('api_keys', () => keys.queued);
    this.denyList = {
      // deny add sends the entry as an edit; one it could not save arrives as `change`
      sync: (change, edit) => (edit && 'remove' in edit ? deny.remove(edit.remove) : deny.change(() => [edit?.add ?? change?.deny].filter((e) => e !== undefined))),
      retry: () => deny.retry(),
      stop: () => deny.stop(),
    };
    this.apiKeys = {
      sync: (change, edit) =>
        keys.change((current) => {
          const revoked = change ? current(change.revoke.id) : undefined;
          return [...(edit?.keys ?? []), ...(revoked && change ? [{ ...revoked, revokedAt: change.revoke.at }] : [])];
        }),
      retry: () => keys.retry(),
      stop: () => keys.stop(),
    };
  }

  /** Subscribes to the cluster's changes and syncs both stores once. */
  async start(): Promise<void> {
    await Promise.all(this.#syncs.map((s) => s.start()));
  }

  async stop(): Promise<void> {
    await Promise.all(this.#syncs.map((s) => s.stop()));
  }
}
