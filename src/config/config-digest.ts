import { createHash } from 'node:crypto';
import YAML from 'yaml';
import { maxAliasCount } from './load-config.js';
import type { Config } from './types.js';

/**
 * Keys that are each instance's own: where it listens and where its dataDir
 * is. Instances of one cluster on one machine (or behind a config tool that
 * templates the bind address) differ there and still serve the same config.
 */
const ownKeys: readonly (readonly string[])[] = [['dataDir'], ['listen', 'https'], ['listen', 'http'], ['listen', 'admin']];

/** JSON with every object's keys sorted, so that two texts saying the same thing serialise the same. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const record = value as Record<string, unknown>;
    return `{${Object.keys(record)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical(record[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

function withoutOwnKeys(value: unknown): unknown {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return value;
  const copy = structuredClone(value) as Record<string, unknown>;
  for (const path of ownKeys) {
    let at: unknown = copy;
    for (const part of path.slice(0, -1)) at = at !== null && typeof at === 'object' ? (at as Record<string, unknown>)[part] : undefined;
    if (at !== null && typeof at === 'object') delete (at as Record<string, unknown>)[path[path.length - 1] as string];
  }
  return copy;
}

/**
 * What identifies the config an instance serves, for comparing the instances
 * of a cluster: "sha256:<hex>" of the config's values (the YAML as parsed,
 * keys sorted: comments, order and formatting do not count), without the
 * keys each instance has its own (`dataDir`, `listen.https`, `listen.http`,
 * `listen.admin`). Files the config names (certificates) are not in it: the
 * fleet compares certificate serials on their own. Without text (the
 * quickstart) it covers the provisioned sites, routes and TLS profile.
 * `text` is one a strict load accepted, so it parses.
 */
export function configDigest(text: string | null, config: Config): string {
  const value =
    text === null
      ? { tls: config.tls.profile.name, sites: config.sites.map((s) => ({ hosts: s.hosts, routes: s.routes.map((r) => ({ path: r.path, upstreams: r.upstreams.map((u) => u.origin) })) })) }
      : withoutOwnKeys(YAML.parse(text, { maxAliasCount }) as unknown);
  return `sha256:${createHash('sha256').update(canonical(value)).digest('hex')}`;
}
