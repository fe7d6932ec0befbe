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
  try {
    const raw = JSON.parse(readFileSync(file, 'utf8')) as { version?: unknown; entries?: unknown } | null;
    return raw?.version === 1 && Array.isArray(raw.entries) ? raw.entries.filter((e): e is E => fits(e, shape)) : [];
  } catch {
    return [];
  }
}

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
    this.#dirty = true;
    return { entry, created };
  }

  /** Drops entries `stale` says are too old; the summary counts as changed when any went. */
  prune(stale: (e: E) => boolean): void {
    for (const [key, e] of this.#entries) {
      if (!stale(e)) continue;
      this.#entries.delete(key);
      this.#dirty = true;
    }
  }

  entries(): E[] {
    return [...this.#entries.values()];
  }

  /** Writes the summary if it changed; one write at a time. Never rejects (a failure is logged). */
  flush(): Promise<void> {
    if (!this.#file || !this.#dirty) return this.#writing;
    this.#dirty = false;
    const file = this.#file;
    const text = JSON.stringify({ version: 1, entries: this.entries() });
    this.#writing = this.#writing
      .then(() => writeFileAtomicAsync(file, text, 0o600))
      .catch((err: Error) => {
        this.#dirty = true;
        this.#log.error({ event: 'summary_write_failed', file, error: err.message }, `${file} could not be written; the summary stays in memory and is retried within a minute`);
      });
    return this.#writing;
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.flush();
  }
}

/**
 * Every process's summary under `folder` merged: entries with the same key
 * are folded by `merge` (into a copy of the first one seen).
 */
export function readSummaries<E>(folder: string, shape: EntryShape<E>, keyOf: (e: E) => string, merge: (into: E, from: E) => void): E[] {
  let files: string[];
  try {
    files = readdirSync(folder).filter((f) => f.endsWith('.json'));
  } catch {
    return [];
  }
  const merged = new Map<string, E>();
  for (const file of files) {
    for (const e of readEntries(join(folder, file), shape)) {
      const key = keyOf(e);
      const known = merged.get(key);
      if (known) merge(known, e);
      else merged.set(key, structuredClone(e));
    }
  }
  return [...merged.values()];
}
