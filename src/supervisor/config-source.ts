import { resolve } from 'node:path';
import { loadConfigFile, quickstart, type Config } from '../config/index.js';

/**
 * Where the config comes from, so that a reload reads it the same way as the
 * start did: a file (re-read with every certificate it names) or the quickstart.
 */
export interface ConfigSource {
  /** For logs: the file path, or "(quickstart)". */
  readonly description: string;
  /** Builds a fresh, validated config; throws the config's errors. */
  load(): Promise<Config>;
}

export function fileSource(path: string): ConfigSource {
  const file = resolve(path);
  return { description: file, load: async () => loadConfigFile(file) };
}

/** The zero-config default; `caFile` is set after the first load. */
export function quickstartSource(workDir: string, listen: string): ConfigSource & { caFile: string | null } {
  const source = {
    description: '(quickstart)',
    caFile: null as string | null,
    async load() {
      const qs = await quickstart(workDir, listen);
      source.caFile = qs.ca.certFile;
      return qs.config;
    },
  };
  return source;
}
