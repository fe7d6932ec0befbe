import { resolveDataDir } from '../state/index.js';
import { resolve } from 'node:path';
import type { ConfigIssue } from '../errors.js';

/**
 * What every section's provisioning needs besides its own raw config: where
 * relative paths start, where issues go, and the few top-level settings a
 * section's checks depend on. One object, so a section function takes its raw
 * config, its path in the file and this, and nothing else.
 */
export interface ProvisionContext {
  /** A path of the config, resolved against the config file's folder. */
  file(path: string): string;
  /**
   * Records a problem at `path` (e.g. `sites[0].clientAuth.ca[1]`);
   * provisioning goes on, so that one run reports every problem of the file.
   */
  issue(path: string, message: string): void;
  /** `dataDir`, resolved: where the built-in CA and ACME keep the certificates they issued. */
  readonly dataDir: string;
  /** Whether `listen.http` is configured: ACME http-01 challenges and the CA's CRL are answered there. */
  readonly hasHttpListener: boolean;
}

/** A context that collects its issues, in the order they were found. */
export interface CollectingContext extends ProvisionContext {
  readonly issues: readonly ConfigIssue[];
}

export function createProvisionContext(options: { baseDir: string; dataDir: string; hasHttpListener: boolean }): CollectingContext {
  const issues: ConfigIssue[] = [];
  const file = (path: string) => resolve(options.baseDir, path);
  return {
    file,
    issue: (path, message) => issues.push({ path, message }),
    dataDir: resolveDataDir(options.baseDir, options.dataDir),
    hasHttpListener: options.hasHttpListener,
    issues,
  };
}

/** Why a file could not be read, for "cannot read FILE (WHY)": the errno code when there is one. */
export function unreadableReason(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? (err as Error).message;
}
