import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomicAsync } from '../state/index.js';
import type { ClientIdentity } from '../trust/index.js';
import type { Logger } from './logger.js';

/** One client certificate that authenticated, as the inventory keeps it. */
export interface InventoryEntry {
  readonly fingerprint: string;
  readonly subject: string;
  readonly issuer: string;
  readonly serial: string;
  /** ISO time; null when the certificate states a time no Date can hold. */
  readonly notAfter: string | null;
  firstSeen: string;
  lastSeen: string;
  count: number;
  sites: string[];
}

const day = 86_400_000;
const maxEntries = 10_000;

/** Where each process keeps its inventory: one file per process name, merged by readers. */
export const inventoryFolder = (dataDir: string) => join(dataDir, 'inventory');

function readEntries(file: string): InventoryEntry[] {
  try {
    const raw = JSON.parse(readFileSync(file, 'utf8')) as { version?: number; entries?: InventoryEntry[] };
    return raw.version === 1 && Array.isArray(raw.entries) ? raw.entries : [];
  } catch {
    return [];
  }
}

/**
 * Every inventory under dataDir merged (one file per process: the single
 * instance, or each worker): per certificate the earliest first sighting, the
 * latest last one, and the sum of the counts.
 */
export function readInventory(dataDir: string): InventoryEntry[] {
  const folder = inventoryFolder(dataDir);
  let files: string[];
  try {
    files = readdirSync(folder).filter((f) => f.endsWith('.json'));
  } catch {
    return [];
  }
  const merged = new Map<string, InventoryEntry>();
  for (const file of files) {
    for (const e of readEntries(join(folder, file))) {
      const known = merged.get(e.fingerprint);
      if (!known) merged.set(e.fingerprint, { ...e, sites: [...e.sites] });
      else {
        if (e.firstSeen < known.firstSeen) known.firstSeen = e.firstSeen;
        if (e.lastSeen > known.lastSeen) known.lastSeen = e.lastSeen;
        known.count += e.count;
        known.sites = [...new Set([...known.sites, ...e.sites])];
      }
    }
  }
  return [...merged.values()];
}

/**
 * The client certificates that authenticated, so operators can warn partners
 * before theirs lapse: subject, issuer, serial, fingerprint, expiry, first
 * and last seen, how often. Recording is a map update per connection; the
 * file (dataDir/inventory/<process>.json) is written asynchronously once a
 * minute when something changed, and at stop. Certificates seen within
 * `windowMs` that come within a threshold of their expiry get one
 * `client_certificate_expiring` warning per threshold. Bounded: the least
 * recently seen go first.
 */
export class ClientInventory {
  readonly #file: string | null;
  readonly #log: Logger;
  readonly #entries = new Map<string, InventoryEntry>();
  readonly #warned = new Map<string, number>();
  #thresholds: readonly number[] = [];
  #windowMs = 30 * day;
  #dirty = false;
  #writing: Promise<void> = Promise.resolve();
  readonly #flushTimer: NodeJS.Timeout;
  readonly #checkTimer: NodeJS.Timeout;

  /** `file` null: in memory only. */
  constructor(file: string | null, log: Logger) {
    this.#file = file;
    this.#log = log;
    if (file) for (const e of readEntries(file)) this.#entries.set(e.fingerprint, e);
    this.#flushTimer = setInterval(() => void this.flush(), 60_000).unref();
    this.#checkTimer = setInterval(() => this.#check(), 3_600_000).unref();
  }

  apply(thresholdsMs: readonly number[], windowMs: number): void {
    this.#thresholds = thresholdsMs;
    this.#windowMs = windowMs;
    this.#check();
  }

  seen(identity: ClientIdentity, site: string, now = Date.now()): void {
    const at = new Date(now).toISOString();
    let entry = this.#entries.get(identity.fingerprint);
    if (entry) {
      this.#entries.delete(identity.fingerprint); // re-inserted last: the map stays in last-seen order
    } else {
      const notAfter = new Date(identity.notAfter);
      entry = { fingerprint: identity.fingerprint, subject: identity.subject, issuer: identity.issuer, serial: identity.serial, notAfter: Number.isNaN(notAfter.getTime()) ? null : notAfter.toISOString(), firstSeen: at, lastSeen: at, count: 0, sites: [] };
      if (this.#entries.size >= maxEntries) this.#entries.delete(this.#entries.keys().next().value as string);
      this.#warnIfExpiring(entry, now);
    }
    entry.lastSeen = at;
    entry.count++;
    if (!entry.sites.includes(site)) entry.sites.push(site);
    this.#entries.set(identity.fingerprint, entry);
    this.#dirty = true;
  }

  entries(): InventoryEntry[] {
    return [...this.#entries.values()];
  }

  /** Writes the inventory if it changed; one write at a time. Never rejects (a failure is logged). */
  flush(): Promise<void> {
    if (!this.#file || !this.#dirty) return this.#writing;
    this.#dirty = false;
    const file = this.#file;
    const text = JSON.stringify({ version: 1, entries: this.entries() });
    this.#writing = this.#writing
      .then(() => writeFileAtomicAsync(file, text, 0o600))
      .catch((err: Error) => this.#log.error({ event: 'inventory_write_failed', file, error: err.message }, 'the client certificate inventory could not be written'));
    return this.#writing;
  }

  async stop(): Promise<void> {
    clearInterval(this.#flushTimer);
    clearInterval(this.#checkTimer);
    await this.flush();
  }

  #check(now = Date.now()): void {
    for (const entry of this.#entries.values()) this.#warnIfExpiring(entry, now);
  }

  #warnIfExpiring(entry: InventoryEntry, now: number): void {
    if (!entry.notAfter || now - new Date(entry.lastSeen).getTime() > this.#windowMs) return;
    const left = new Date(entry.notAfter).getTime() - now;
    const crossed = left <= 0 ? 0 : this.#thresholds.filter((t) => left <= t).at(-1);
    if (crossed === undefined) return;
    const warned = this.#warned.get(entry.fingerprint);
    if (warned !== undefined && warned <= crossed) return;
    this.#warned.set(entry.fingerprint, crossed);
    this.#log.warn(
      { event: 'client_certificate_expiring', subject: entry.subject, issuer: entry.issuer, serial: entry.serial, fingerprint: entry.fingerprint, notAfter: entry.notAfter, daysLeft: Math.max(0, Math.floor(left / day)), lastSeen: entry.lastSeen, sites: entry.sites },
      `the client certificate ${entry.subject} (last seen ${entry.lastSeen}) ${left <= 0 ? 'has expired' : `expires in ${Math.floor(left / day)} day(s)`}, on ${entry.notAfter}`,
    );
  }
}
