import { watch, type FSWatcher } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Config } from '../config/index.js';

/** The files a reload re-reads that tools replace on their own: certificate chains, keys, client CA bundles. */
export function watchedFilesOf(config: Config): string[] {
  const files = new Set<string>();
  for (const site of config.sites) {
    // ACME certificates are written by the ACME manager, which reloads itself once they are complete
    if (!site.acme) for (const pair of site.certificates) files.add(pair.certFile).add(pair.keyFile);
    for (const ca of site.clientAuth?.caFiles ?? []) files.add(ca);
  }
  return [...files];
}

/** What identifies a file's content cheaply; the real path changes when a Kubernetes `..data` symlink is swapped. */
async function stampOf(path: string): Promise<string> {
  try {
    const [real, s] = await Promise.all([realpath(path), stat(path)]);
    return `${real}|${s.ino}|${s.size}|${s.mtimeMs}`;
  } catch {
    return 'missing';
  }
}

/**
 * Notices when watched files change: a watch on each file's folder (an
 * editor's save, `mv` over the file, cert-manager's or the kubelet's swap of
 * the `..data` symlink all show there), settled for `settleMs` so that a
 * certificate and its key written one after the other arrive as one change,
 * plus a poll every `pollMs` for file systems whose events do not reach us.
 * `onChange` gets the files whose stamp changed since the last call or
 * `watch`; it is never called for a file that merely stayed as it was.
 */
export class FileWatcher {
  readonly #onChange: (changed: string[]) => void;
  readonly #settleMs: number;
  readonly #stamps = new Map<string, string>();
  readonly #folders = new Map<string, FSWatcher>();
  #settle: NodeJS.Timeout | null = null;
  #poll: NodeJS.Timeout;
  #checking: Promise<void> = Promise.resolve();

  constructor(onChange: (changed: string[]) => void, opts: { settleMs?: number; pollMs?: number } = {}) {
    this.#onChange = onChange;
    this.#settleMs = opts.settleMs ?? 500;
    this.#poll = setInterval(() => this.#check(), opts.pollMs ?? 60_000).unref();
  }

  /** Watches exactly `files` from now on, taking their current state as the baseline. */
  async watch(files: readonly string[]): Promise<void> {
    const stamps = await Promise.all(files.map(stampOf));
    this.#stamps.clear();
    files.forEach((f, i) => this.#stamps.set(f, stamps[i] as string));
    const folders = new Set(files.map((f) => dirname(f)));
    for (const [folder, watcher] of this.#folders) {
      if (folders.has(folder)) continue;
      watcher.close();
      this.#folders.delete(folder);
    }
    for (const folder of folders) {
      if (this.#folders.has(folder)) continue;
      try {
        const watcher = watch(folder, { persistent: false }, () => this.#changedSoon());
        watcher.on('error', () => watcher.close());
        this.#folders.set(folder, watcher);
      } catch {
        // a folder that cannot be watched is still polled
      }
    }
  }

  close(): void {
    clearInterval(this.#poll);
    if (this.#settle) clearTimeout(this.#settle);
    for (const watcher of this.#folders.values()) watcher.close();
    this.#folders.clear();
  }

  #changedSoon(): void {
    if (this.#settle) clearTimeout(this.#settle);
    this.#settle = setTimeout(() => this.#check(), this.#settleMs).unref();
  }

  /** One check at a time, so a change is reported once. */
  #check(): void {
    this.#checking = this.#checking.then(async () => {
      const changed: string[] = [];
      for (const [file, before] of this.#stamps) {
        const now = await stampOf(file);
        if (now === before) continue;
        this.#stamps.set(file, now);
        changed.push(file);
      }
      if (changed.length > 0) this.#onChange(changed);
    }).catch(() => {});
  }
}
