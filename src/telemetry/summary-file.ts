import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomicAsync } from '../state/index.js';
import type { Logger } from '../observe/index.js';

/** The fields an entry must have, by type ("string?": a string or null): what a file read back is checked against. */
export type EntryShape<E> = { readonly [K in keyof E]-?: 'string' | 'string?' | 'number' | 'string[]' };

function fits<E>(value: unknown, shape: EntryShape<E>): value is E {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return Object.entries(shape).every(([field, type]) => {
    const x = v[field];
    if (type === 'string[]') return Array.isArray(x) && x.every((s) => typeof s === 'string');
    if (type === 'string?') return x === null || typeof x === 'string';
    return type === 'number' ? Number.isFinite(x) : typeof x === type;
  });
}

/**
 * The entries of one summary file; a missing or unreadable file is empty and
 * an entry of the wrong shape (a hand edit, an older format) is skipped: a
 * summary is a report aid, never a reason for a start or a report to fail.
 */
function readEntries<E>(file: string, shape: EntryShape<E>): E[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  return parseEntries(text, shape);
}

/** The entries of a summary's text (a file's, or a copy kept in the cluster's Redis), checked the same way. */
function parseEntries<E>(text: string, shape: EntryShape<E>): E[] {
  try {
    const raw = JSON.parse(text) as { version?: unknown; entries?: unknown } | null;
    return raw?.version === 1 && Array.isArray(raw.entries) ? raw.entries.filter((e): e is E => fits(e, shape)) : [];
  } catch {
    return [];
  }
}

/**
 * Where a summary is also copied (the cluster's Redis): resolves true once
 * `text` is stored, false when it cannot be now (the copy stays due, without
 * a log: the outage is reported once, by the link); a rejection is logged and
 * retried at the next flush.
 */
export type SummaryMirror = (text: string) => Promise<boolean>;

/**
 * A summary one process keeps of what it saw (client certificates, weak
 * clients): a bounded map in memory, least recently touched first and
 * dropped first, written to `file` (one per process under a folder of
 * dataDir) asynchronously once a minute when something changed, and at stop.
 * Recording is a map update; nothing on the connection path waits for disk.
 */
export class SummaryFile<E> {
  readonly #file: string | null;
  readonly #log: Logger;
  readonly #max: number;
  readonly #entries = new Map<string, E>();
  #dirty = false;
  #mirror: SummaryMirror | null = null;
  #mirrorDue = false;
  #writing: Promise<void> = Promise.resolve();
  readonly #timer: NodeJS.Timeout;

  /** `file` null: in memory only. */
  constructor(file: string | null, shape: EntryShape<E>, keyOf: (e: E) => string, maxEntries: number, log: Logger) {
    this.#file = file;
    this.#log = log;
    this.#max = maxEntries;
    if (file) for (const e of readEntries(file, shape).slice(-maxEntries)) this.#entries.set(keyOf(e), e);
    this.#timer = setInterval(() => void this.flush(), 60_000).unref();
  }

  /** The entry for `key`, made by `create` when new; it moves to the most recent end and the summary counts as changed. */
  touch(key: string, create: () => E): { entry: E; created: boolean } {
    let entry = this.#entries.get(key);
    const created = entry === undefined;
    if (entry !== undefined) this.#entries.delete(key);
    else {
      entry = create();
      if (this.#entries.size >= this.#max) this.#entries.delete(this.#entries.keys().next().value as string);
    }
    this.#entries.set(key, entry);
    this.#dirty = this.#mirrorDue = true;
    return { entry, created };
  }

  /** Drops entries `stale` says are too old; the summary counts as changed when any went. */
  prune(stale: (e: E) => boolean): void {
    for (const [key, e] of this.#entries) {
      if (!stale(e)) continue;
      this.#entries.delete(key);
      this.#dirty = this.#mirrorDue = true;
    }
  }

  entries(): E[] {
    return [...this.#entries.values()];
  }

  /** Copies the summary to `mirror` too, at every flush that follows a change (and at the next one after `mirrorAgain`). */
  mirrorTo(mirror: SummaryMirror): void {
    this.#mirror = mirror;
    this.#mirrorDue = true;
  }

  /** The mirror's copy may be lost (Redis came back empty): it is written again at the next flush. */
  mirrorAgain(): void {
    if (this.#mirror) this.#mirrorDue = true;
  }

  /** Writes the summary if it changed (file and mirror); one write at a time. Never rejects (a failure is logged). */
  flush(): Promise<void> {
    const file = this.#file && this.#dirty ? this.#file : null;
    const mirror = this.#mirror && this.#mirrorDue ? this.#mirror : null;
    if (!file && !mirror) return this.#writing;
    if (file) this.#dirty = false;
    if (mirror) this.#mirrorDue = false;
    const text = JSON.stringify({ version: 1, entries: this.entries() });
    this.#writing = this.#writing.then(() => Promise.all([file && this.#writeFile(file, text), mirror && this.#writeMirror(mirror, text)])).then(() => {});
    return this.#writing;
  }

  #writeFile(file: string, text: string): Promise<void> {
    return writeFileAtomicAsync(file, text, 0o600).catch((err: Error) => {
      this.#dirty = true;
      this.#log.error({ event: 'summary_write_failed', file, error: err.message }, `${file} could not be written; the summary stays in memory and is retried within a minute`);
    });
  }

  #writeMirror(mirror: SummaryMirror, text: string): Promise<void> {
    return mirror(text).then(
      (stored) => {
        if (!stored) this.#mirrorDue = true;
      },
      (err: Error) => {
        this.#mirrorDue = true;
        this.#log.warn({ event: 'summary_share_failed', error: err.message }, `a summary could not be copied to the cluster's state backend (${err.message}); the local file has it, the copy is retried within a minute`);
      },
    );
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.flush();
  }
}

/**
 * Every process's summary under `folder` merged, and the summaries' texts in
 * `others` (other instances' copies from the cluster): entries with the same
 * key are folded by `merge` (into a copy of the first one seen).
 */
export function readSummaries<E>(folder: string, shape: EntryShape<E>, keyOf: (e: E) => string, merge: (into: E, from: E) => void, others: Iterable<string> = []): E[] {
  let files: string[];
  try {
    files = readdirSync(folder).filter((f) => f.endsWith('.json'));
  } catch {
    files = [];
  }
  const lists = [...files.map((file) => readEntries(join(folder, file), shape)), ...[...others].map((text) => parseEntries(text, shape))];
  const merged = new Map<string, E>();
  for (const list of lists) {
    for (const e of list) {
      const key = keyOf(e);
      const known = merged.get(key);
      if (known) merge(known, e);
      else merged.set(key, structuredClone(e));
    }
  }
  return [...merged.values()];
}
