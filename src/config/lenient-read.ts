import { dirname, resolve } from 'node:path';
import YAML from 'yaml';
import { resolveDataDir } from '../state/index.js';
import { maxAliasCount } from './load-config.js';

/** A site that asks for an `internal: true` certificate: its hosts in lower case (as the strict load normalises them), the first one naming its files. */
export interface InternalSite {
  readonly hosts: readonly string[];
}

/** What a config says about its state, read without validating the rest. */
export interface LenientRead {
  /** The absolute dataDir: the config's when it is a string, else the default; relative to the config file's folder. */
  readonly dataDir: string;
  /** The sites with an `internal: true` certificate and a non-empty list of string hosts, in the config's order. */
  readonly internalSites: readonly InternalSite[];
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Reads config text (as if from `file`) for what is needed before, or
 * instead of, the strict load: where the dataDir is (the CLI's commands reach
 * the running instance and the stores there even when the config is broken,
 * so that the instance can say why it refuses it), and which sites want an
 * `internal: true` certificate (issued before the strict load, which only
 * reads files). Never throws: YAML that does not parse, or a value of the
 * wrong shape, reads as absent; whatever is wrong is for the strict load to
 * report. Aliases are bounded as in the strict load.
 */
export function readLeniently(text: string, file: string): LenientRead {
  let raw: unknown;
  try {
    raw = YAML.parse(text, { maxAliasCount });
  } catch {
    raw = undefined;
  }
  const config = isRecord(raw) ? raw : {};
  const base = dirname(resolve(file));
  const dataDir = typeof config.dataDir === 'string' ? resolveDataDir(base, config.dataDir) : resolveDataDir(base);
  const sites = Array.isArray(config.sites) ? config.sites : [];
  const internalSites = sites.filter(wantsInternalCertificate).map((s) => ({ hosts: (s.hosts as string[]).map((h) => h.toLowerCase()) }));
  return { dataDir, internalSites };
}

function wantsInternalCertificate(site: unknown): site is Record<string, unknown> {
  if (!isRecord(site)) return false;
  const { certificates, hosts } = site;
  return Array.isArray(certificates) && certificates.some((c) => isRecord(c) && c.internal === true) && Array.isArray(hosts) && hosts.length > 0 && hosts.every((h) => typeof h === 'string');
}

/**
 * Whether config text asks for a cluster's shared state (`state.backend:
 * redis`), read as leniently as the dataDir: the CLI's commands that change
 * a shared store (deny remove) then go through the running instance, since
 * the local files are only copies of what the cluster holds.
 */
export function readsSharedState(text: string): boolean {
  let raw: unknown;
  try {
    raw = YAML.parse(text, { maxAliasCount });
  } catch {
    return false;
  }
  return isRecord(raw) && isRecord(raw.state) && raw.state.backend === 'redis';
}
