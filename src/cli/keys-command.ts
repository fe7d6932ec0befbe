import { readApiKeys, writeApiKeys, newApiKey, type ApiKeyRecord } from '../access/index.js';
import { normalisePath } from '../config/index.js';
import { PortcullisError } from '../errors.js';
import { apiKeysFile } from '../state/index.js';
import { normaliseFingerprint } from '../trust/index.js';
import { dataDirOf, sharesState } from './data-dir.js';
import { durationFlag, notifyRunningInstance, writeOrHandOver } from './instance-io.js';
import { configFileFor } from './start-command.js';

export interface KeyCreateOptions {
  readonly config?: string;
  readonly name?: string;
  /** Comma-separated route paths. */
  readonly routes?: string;
  /** A duration, or "never". */
  readonly expires?: string;
  readonly bindCert?: string;
  readonly bindUri?: string;
}

export interface KeyRotateOptions {
  readonly config?: string;
  /** How long the old key keeps working. */
  readonly overlap?: string;
}

const usage = (message: string) => new PortcullisError('PCL_CLI_USAGE', message);

function routesOf(text: string | undefined): string[] | null {
  if (text === undefined) return null;
  const routes = text.split(',').map((r) => r.trim()).filter(Boolean);
  if (routes.length === 0) throw usage('--routes lists route paths, e.g. "/v1/,/reports/"');
  for (const r of routes) {
    const normal = r.startsWith('/') ? normalisePath(r) : null;
    if (!normal?.ok || normal.path !== r) throw usage(`--routes: "${r}" is not a route path as the config writes it (e.g. "/v1/")`);
  }
  return routes;
}

function expiryOf(text: string | undefined, now: number): string | null {
  // keys expire unless told otherwise: a forgotten key must not work forever
  if (text === 'never') return null;
  return new Date(now + (durationFlag('--expires', text ?? '90d') as number)).toISOString();
}

function bindingOf(opts: KeyCreateOptions): Pick<ApiKeyRecord, 'bindCert' | 'bindUri'> {
  const bindCert = opts.bindCert === undefined ? null : normaliseFingerprint(opts.bindCert);
  if (opts.bindCert !== undefined && bindCert === null) throw usage(`--bind-cert ${opts.bindCert}: use the certificate's SHA-256 fingerprint, "sha256:AB:CD:…" (openssl x509 -noout -fingerprint -sha256)`);
  if (opts.bindUri !== undefined && !/^[a-z][a-z0-9+.-]*:\S+$/i.test(opts.bindUri)) throw usage(`--bind-uri ${opts.bindUri}: use the URI SAN of the client certificate, e.g. spiffe://example.test/billing`);
  return { bindCert, bindUri: opts.bindUri ?? null };
}

function describe(k: ApiKeyRecord, now: number): string {
  const state = k.revokedAt ? `revoked ${k.revokedAt}` : k.expiresAt && Date.parse(k.expiresAt) <= now ? `expired ${k.expiresAt}` : `active, expires ${k.expiresAt ?? 'never'}`;
  const bound = [k.bindCert && `cert ${k.bindCert}`, k.bindUri && `uri ${k.bindUri}`].filter(Boolean).join(' ');
  return `${k.id}  ${k.name}  ${state}  routes ${k.routes?.join(',') ?? 'all'}${bound ? `  bound to ${bound}` : ''}${k.rotatedTo ? `  rotated to ${k.rotatedTo}` : ''}  created ${k.createdAt}`;
}

/** The key alone on stdout (for scripts); what it is on stderr. */
function printKey(key: string, record: ApiKeyRecord, dataDir: string): void {
  process.stdout.write(`${key}\n`);
  process.stderr.write(`API key ${record.id} (${record.name}), expires ${record.expiresAt ?? 'never'}. It is shown once: only its hash is stored, in ${apiKeysFile(dataDir)}.\n`);
}

function find(keys: readonly ApiKeyRecord[], id: string): ApiKeyRecord {
  const key = keys.find((k) => k.id === id);
  if (!key) throw usage(`no API key ${id}; see portcullis keys list`);
  return key;
}

/**
 * `portcullis keys create|list|revoke|rotate`: API keys, kept as hashes in
 * dataDir/api-keys.json. Changes are applied by the running instance at once
 * (control socket); without one, at the next start. When the store cannot be
 * written (full disk, read-only filesystem), revoke still hands the
 * revocation to the running instance, which applies it and keeps trying to
 * save it; create and rotate change nothing (PCL_STATE_WRITE_FAILED): a key
 * that is not saved would vanish at the next start.
 */
export async function runKeys(action: 'create' | 'list' | 'revoke' | 'rotate', id: string | undefined, opts: KeyCreateOptions & KeyRotateOptions): Promise<void> {
  const file = configFileFor(opts.config);
  const dataDir = dataDirOf(file);
  const keys = readApiKeys(dataDir);
  const now = Date.now();
  const at = new Date(now).toISOString();
  /** The records this command wrote: what a cluster's instance writes to Redis. */
  const changed: ApiKeyRecord[] = [];
  if (action === 'list') {
    if (keys.length === 0) process.stdout.write(`no API keys (${apiKeysFile(dataDir)})\n`);
    for (const k of keys) process.stdout.write(`${describe(k, now)}\n`);
    return;
  }
  if (action === 'create') {
    if (!opts.name?.trim()) throw usage('--name is required: who or what the key is for');
    const fresh = newApiKey();
    const record: ApiKeyRecord = { id: fresh.id, name: opts.name.trim(), hash: fresh.hash, routes: routesOf(opts.routes), createdAt: at, expiresAt: expiryOf(opts.expires, now), revokedAt: null, ...bindingOf(opts), rotatedTo: null };
    writeApiKeys(dataDir, [...keys, record]);
    printKey(fresh.key, record, dataDir);
    changed.push(record);
  } else if (id === undefined) {
    throw usage(`keys ${action} needs the key id; see portcullis keys list`);
  } else if (action === 'revoke') {
    const key = find(keys, id);
    if (key.revokedAt) throw usage(`API key ${id} was revoked already, at ${key.revokedAt}`);
    // a revocation must not wait for disk space: unsaved, it still goes to the running instance
    changed.push({ ...key, revokedAt: at });
    const how = await writeOrHandOver(() => writeApiKeys(dataDir, keys.map((k) => (k.id === id ? { ...k, revokedAt: at } : k))), dataDir, { command: 'api-keys', unpersisted: { revoke: { id, at } } }, `revocation of API key ${id} (${key.name})`, process.stderr);
    process.stdout.write(`revoked API key ${id} (${key.name})\n`);
    if (how === 'handed over') return;
  } else {
    const old = find(keys, id);
    if (old.revokedAt) throw usage(`API key ${id} is revoked; create a new key instead`);
    // rotating twice would hand out two live successors; an expired key has no clients left to carry over
    if (old.rotatedTo) throw usage(`API key ${id} was rotated already, to ${old.rotatedTo}; rotate that key instead`);
    if (old.expiresAt !== null && Date.parse(old.expiresAt) <= now) throw usage(`API key ${id} expired at ${old.expiresAt}; create a new key instead`);
    const overlapEnd = now + (durationFlag('--overlap', opts.overlap ?? '24h') as number);
    const fresh = newApiKey();
    const record: ApiKeyRecord = { ...old, id: fresh.id, hash: fresh.hash, createdAt: at, expiresAt: old.expiresAt === null ? null : new Date(now + (Date.parse(old.expiresAt) - Date.parse(old.createdAt))).toISOString(), rotatedTo: null };
    // the old key works until the overlap ends (or its own expiry, if sooner), so clients can switch without an outage
    const oldUntil = old.expiresAt === null ? overlapEnd : Math.min(overlapEnd, Date.parse(old.expiresAt));
    const rotated: ApiKeyRecord = { ...old, expiresAt: new Date(oldUntil).toISOString(), rotatedTo: fresh.id };
    writeApiKeys(dataDir, [...keys.map((k) => (k.id === id ? rotated : k)), record]);
    changed.push(rotated, record);
    printKey(fresh.key, record, dataDir);
    process.stderr.write(`the old key ${id} keeps working until ${new Date(oldUntil).toISOString()}\n`);
  }
  // stdout carries only the key (or the outcome of revoke): the instance's answer goes to stderr
  // what a cluster's instance tells the cluster; the memory backend re-reads the file alone
  await notifyRunningInstance(dataDir, sharesState(file) ? { command: 'api-keys', edit: { keys: changed } } : { command: 'api-keys' }, 'API keys', process.stderr);
}
