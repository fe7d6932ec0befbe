import { weakClientsFolder } from '../state/index.js';
import type { WeakOffer } from '../edge/index.js';
import { isConnectionEvent } from './connection-events.js';
import type { EventBus } from '../observe/index.js';
import type { Logger } from '../observe/index.js';
import { readSummaries, SummaryFile, type EntryShape, type SummaryMirror } from './summary-file.js';

/**
 * What the report lists a client for: a weak offer (edge/weak-offer.ts), or,
 * for a client whose offer is fine otherwise, `no_pq_key_share`: it sent no
 * post-quantum hybrid key share, so its key exchange is classical
 * (informational: nothing refuses it).
 */
export type WeakClientKind = WeakOffer | 'no_pq_key_share';

/** One client (source, fingerprint, server name) whose ClientHello was weak, as the report lists it. */
export interface WeakClientEntry {
  readonly weakness: WeakClientKind;
  readonly address: string;
  readonly ja4: string | null;
  readonly sni: string | null;
  /** The highest version it offered, last time. */
  offered: string | null;
  firstSeen: string;
  lastSeen: string;
  /** Connections seen, and how many of them were refused. */
  count: number;
  refused: number;
  /** The reason of the last refusal; null when the last connection was accepted. */
  lastReason: string | null;
  sites: string[];
}

const day = 86_400_000;
const maxEntries = 10_000;
/** Entries not seen for this long are dropped: the report is about clients that still try. */
const retentionMs = 90 * day;

const shape: EntryShape<WeakClientEntry> = {
  weakness: 'string',
  address: 'string',
  ja4: 'string?',
  sni: 'string?',
  offered: 'string?',
  firstSeen: 'string',
  lastSeen: 'string',
  count: 'number',
  refused: 'number',
  lastReason: 'string?',
  sites: 'string[]',
};

const keyOf = (e: Pick<WeakClientEntry, 'weakness' | 'address' | 'ja4' | 'sni'>) => `${e.weakness}|${e.address}|${e.ja4 ?? ''}|${e.sni ?? ''}`;

/** Every process's weak-client summary under dataDir merged, with `others` (the texts of other instances' summaries, from the cluster). */
export function readWeakClients(dataDir: string, others: readonly string[] = []): WeakClientEntry[] {
  return readSummaries(weakClientsFolder(dataDir), shape, keyOf, (known, e) => {
    if (e.firstSeen < known.firstSeen) known.firstSeen = e.firstSeen;
    if (e.lastSeen > known.lastSeen) {
      known.lastSeen = e.lastSeen;
      known.offered = e.offered;
      known.lastReason = e.lastReason;
    }
    known.count += e.count;
    known.refused += e.refused;
    known.sites = [...new Set([...known.sites, ...e.sites])];
  }, others);
}

/**
 * The clients that offered a weak ClientHello (TLS < 1.2, no acceptable
 * suite, no TLS 1.3, or no post-quantum key share), folded from the connection events into one entry
 * per weakness, source, JA4 and server name, with counts and first/last
 * seen. Kept under dataDir/weak-clients/<process>.json (see SummaryFile):
 * the list an operator needs before raising the minimum version.
 */
export class WeakClients {
  readonly #summary: SummaryFile<WeakClientEntry>;
  readonly #unsubscribe: () => void;
  readonly #pruneTimer: NodeJS.Timeout;

  /** `file` null: in memory only. */
  constructor(file: string | null, bus: EventBus, log: Logger) {
    this.#summary = new SummaryFile(file, shape, keyOf, maxEntries, log);
    this.#prune();
    this.#pruneTimer = setInterval(() => this.#prune(), 3_600_000).unref();
    this.#unsubscribe = bus.subscribe((e) => {
      // a client-certificate refusal follows an accepted handshake that was already counted
      if (!isConnectionEvent(e) || e.event === 'client_cert_rejected') return;
      const weakness: WeakClientKind | null = e.weakness ?? (e.postQuantum === false ? 'no_pq_key_share' : null);
      if (weakness === null) return;
      const key = { weakness, address: e.remoteAddress, ja4: e.ja4, sni: e.sni };
      const { entry } = this.#summary.touch(keyOf(key), () => ({ ...key, offered: e.offered, firstSeen: e.time, lastSeen: e.time, count: 0, refused: 0, lastReason: null, sites: [] }));
      entry.lastSeen = e.time;
      entry.offered = e.offered;
      entry.count++;
      entry.lastReason = e.reason;
      if (e.reason !== null) entry.refused++;
      if (e.site !== null && !entry.sites.includes(e.site)) entry.sites.push(e.site);
    });
  }

  entries(): WeakClientEntry[] {
    return this.#summary.entries();
  }

  #prune(now = Date.now()): void {
    this.#summary.prune((e) => now - new Date(e.lastSeen).getTime() > retentionMs);
  }

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
    this.#unsubscribe();
    clearInterval(this.#pruneTimer);
    await this.#summary.stop();
  }
}
