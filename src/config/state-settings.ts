import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import YAML from 'yaml';
import { ConfigError } from '../errors.js';
import { maxAliasCount } from './load-config.js';
import { createProvisionContext } from './provision-context.js';
import { provisionState } from './provision-state.js';
import { configSchema } from './schema.js';
import type { StateSettings } from './types.js';

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Where a config file keeps its state, read before (or instead of) the
 * strict load: with `state.backend: redis`, what the whole config needs may
 * be in the cluster's Redis (the built-in CA that `clientAuth` names, ACME
 * certificates), and the `ca` commands must change the cluster's CA, never a
 * local one. A `redis` section is validated and provisioned as the strict
 * load does it, and its problems thrown (PCL_CONFIG_INVALID): guessing would
 * split the cluster's CA. A file that cannot be read or parsed, or that says
 * nothing about `state`, reads as `memory`, as the lenient read does; the
 * strict load reports what is wrong with it.
 */
export function readStateSettings(file: string): StateSettings {
  const path = resolve(file);
  let raw: unknown;
  try {
    raw = YAML.parse(readFileSync(path, 'utf8'), { maxAliasCount });
  } catch {
    return { backend: 'memory' };
  }
  const state = isRecord(raw) ? raw.state : undefined;
  if (!isRecord(state) || state.backend !== 'redis') return { backend: 'memory' };
  const parsed = configSchema.shape.state.safeParse(state);
  if (!parsed.success) throw new ConfigError(path, parsed.error.issues.map((i) => ({ path: ['state', ...i.path].join('.'), message: i.message })));
  const ctx = createProvisionContext({ baseDir: dirname(path), dataDir: '.', hasHttpListener: false });
  const settings = provisionState(parsed.data, ctx);
  if (ctx.issues.length > 0) throw new ConfigError(path, ctx.issues);
  return settings;
}
