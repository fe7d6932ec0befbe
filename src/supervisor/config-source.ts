import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { PortcullisError } from '../errors.js';
import { issueInternalCertificates, parseConfigText, quickstart, renewQuickstartCertificate, type Config } from '../config/index.js';

/**
 * Where the config comes from, so that a reload reads it the same way as the
 * start did: a file (re-read with every certificate it names) or the quickstart.
 */
export interface ConfigSource {
  /** For logs: the file path, or "(quickstart)". */
  readonly description: string;
  /** Builds a fresh, validated config and returns it with the text it was built from (null for the quickstart); throws the config's errors. */
  load(): Promise<{ config: Config; text: string | null }>;
  /** Issues or renews the certificates the built-in CA issues for it (`internal: true`, the quickstart's); returns the files written (the file watcher then reloads). */
  renewInternal?(): Promise<string[]>;
}

/** A config file. Cluster workers build their config from the exact text the primary validated. */
export interface FileSource extends ConfigSource {
  load(): Promise<{ config: Config; text: string }>;
  /** Builds the config from text read earlier (relative paths still start at the file's folder). */
  fromText(text: string): Config;
  renewInternal(): Promise<string[]>;
}

export function fileSource(path: string): FileSource {
  const file = resolve(path);
  const read = async () => {
    try {
      return await readFile(file, 'utf8');
    } catch (err) {
      throw new PortcullisError('PCL_CONFIG_NOT_FOUND', `cannot read config file ${file}: ${(err as Error).message}; check the --config path`, { cause: err });
    }
  };
  return {
    description: file,
    async load() {
      const text = await read();
      await issueInternalCertificates(text, file);
      return { config: parseConfigText(text, file), text };
    },
    fromText: (text) => parseConfigText(text, file),
    renewInternal: async () => issueInternalCertificates(await read(), file),
  };
}

/** The zero-config default; `caFile` is set after the first load. */
export function quickstartSource(workDir: string, listen: string): ConfigSource & { caFile: string | null } {
  const source = {
    description: '(quickstart)',
    caFile: null as string | null,
    async load() {
      const qs = await quickstart(workDir, listen);
      source.caFile = qs.ca.certFile;
      return { config: qs.config, text: null };
    },
    renewInternal: () => renewQuickstartCertificate(workDir),
  };
  return source;
}
