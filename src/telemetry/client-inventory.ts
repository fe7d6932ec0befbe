import type { Config } from '../config/index.js';
import { inventoryFolder } from '../state/index.js';
import type { ClientIdentity } from '../trust/index.js';
import type { Logger } from '../observe/index.js';
import { readSummaries, SummaryFile, type EntryShape, type SummaryMirror } from './summary-file.js';

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

const shape: EntryShape<InventoryEntry> = {
  fingerprint: 'string',
  subject: 'string',
  issuer: 'string',
  serial: 'string',
  notAfter: 'string?',
  firstSeen: 'string',
  lastSeen: 'string',
  count: 'number',
  sites: 'string[]',
};

const keyOf = (e: InventoryEntry) => e.fingerprint;

/**
 * Every inventory under dataDir merged (one file per process: the single
 * instance, or each worker), with `others` (the texts of other instances'
 * inventories, from the cluster): per certificate the earliest first sighting, the
 * latest last one, and the sum of the counts.
 */
export function readInventory(dataDir: string, others: readonly string[] = []): InventoryEntry[] {
  return readSummaries(inventoryFolder(dataDir), shape, keyOf, (known, e) => {
    if (e.firstSeen < known.firstSeen) known.firstSeen = e.firstSeen;
    if (e.lastSeen > known.lastSeen) known.lastSeen = e.lastSeen;
    known.count += e.count;
    known.sites = [...new Set([...known.sites, ...e.sites])];
  }, others);
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
  readonly #log: Logger;
  readonly #summary: SummaryFile<InventoryEntry>;
  readonly #warned = new Map<string, number>();
  #thresholds: readonly number[] = [];
  #windowMs = 30 * day;
  readonly #checkTimer: NodeJS.Timeout;

  /** `file` null: in memory only. */
  constructor(file: string | null, log: Logger) {
    this.#log = log;
    this.#summary = new SummaryFile(file, shape, keyOf, maxEntries, log);
    this.#checkTimer = setInterval(() => this.#check(), 3_600_000).unref();
  }

  /** Takes the expiry warning thresholds and the "seen recently" window of the config in force. */
  apply(config: Config): void {
    this.#thresholds = config.tls.expiryWarningsMs;
    this.#windowMs = config.tls.clientInventoryWindowMs;
    this.#check();
  }

  seen(identity: ClientIdentity, site: string, now = Date.now()): void {
    const at = new Date(now).toISOString();
    const { entry, created } = this.#summary.touch(identity.fingerprint, () => {
      const notAfter = new Date(identity.notAfter);
      return { fingerprint: identity.fingerprint, subject: identity.subject, issuer: identity.issuer, serial: identity.serial, notAfter: Number.isNaN(notAfter.getTime()) ? null : notAfter.toISOString(), firstSeen: at, lastSeen: at, count: 0, sites: [] };
    });
    if (created) this.#warnIfExpiring(entry, now);
    entry.lastSeen = at;
    entry.count++;
    if (!entry.sites.includes(site)) entry.sites.push(site);
  }

  entries(): InventoryEntry[] {
    return this.#summary.entries();
  }

  /** Writes the inventory if it changed. Never rejects (a failure is logged). */
  flush(): Promise<void> {
    return this.#summary.flush();
  }

  /** Copies the summary to `mirror` (the cluster's Redis) at every flush after a change; `again` when that copy may be lost. */
  mirrorTo(mirror: SummaryMirror): void {
    this.#summary.mirrorTo(mirror);
  }

  mirrorAgain(): void {
    this.#summary.mirrorAgain();
  }

  async stop(): Promise<void> {
    clearInterval(this.#checkTimer);
    await this.#summary.stop();
  }

  #check(now = Date.now()): void {
    for (const entry of this.#summary.entries()) this.#warnIfExpiring(entry, now);
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
