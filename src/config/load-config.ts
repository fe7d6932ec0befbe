import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import YAML from 'yaml';
import type { z } from 'zod';
import { ConfigError, PortcullisError } from '../errors.js';
import { formatZodIssues } from './format-issues.js';
import { provision } from './provision.js';
import { configSchema } from './schema.js';
import type { Config } from './types.js';

/**
 * Reads, validates and provisions a config file. Throws `PortcullisError`
 * (PCL_CONFIG_NOT_FOUND, PCL_CONFIG_YAML) or `ConfigError` (PCL_CONFIG_INVALID,
 * with every issue); never returns a partly valid config.
 */
export function loadConfigFile(file: string): Config {
  const path = resolve(file);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new PortcullisError('PCL_CONFIG_NOT_FOUND', `cannot read config file ${path}: ${(err as Error).message}; check the --config path`, {
      cause: err,
    });
  }
  return parseConfigText(text, path);
}

/** Parses YAML text as if read from `source` (relative paths start at its folder). */
export function parseConfigText(text: string, source: string): Config {
  const doc = YAML.parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const first = doc.errors[0] as YAML.YAMLError;
    const where = first.linePos ? `line ${first.linePos[0].line}, column ${first.linePos[0].col}` : 'unknown position';
    throw new PortcullisError('PCL_CONFIG_YAML', `${source}: YAML syntax error at ${where}: ${first.message.split('\n')[0]}; fix the YAML`, {
      cause: first,
    });
  }
  // a bounded alias count keeps a "billion laughs" document from expanding without limit
  return buildConfig(doc.toJS({ maxAliasCount: 50 }) ?? {}, source, dirname(source));
}

/** Validates and provisions an already parsed config object. */
export function buildConfig(input: unknown, source: string, baseDir: string): Config {
  const parsed = configSchema.safeParse(input);
  if (!parsed.success) throw new ConfigError(source, formatZodIssues(parsed.error.issues, input, knownKeysAt));
  const { config, issues } = provision(parsed.data, source, baseDir);
  if (!config) throw new ConfigError(source, issues);
  return config;
}

type AnySchema = z.core.$ZodType;

/** The keys the schema accepts at a path, for "did you mean" hints. */
function knownKeysAt(path: readonly PropertyKey[]): string[] {
  let schema: AnySchema | undefined = configSchema;
  for (const key of [...path, null]) {
    // unwrap defaults, optionals, refinements and unions down to an object or array
    for (let guard = 0; schema && guard < 10; guard++) {
      const def = schema._zod.def as unknown as Record<string, unknown> & { type: string };
      if (def.type === 'default' || def.type === 'prefault' || def.type === 'optional' || def.type === 'nullable') schema = def.innerType as AnySchema;
      else if (def.type === 'pipe') schema = def.in as AnySchema;
      else if (def.type === 'union') schema = (def.options as AnySchema[]).find((o) => ['object', 'array'].includes(o._zod.def.type));
      else break;
    }
    if (!schema) return [];
    const def = schema._zod.def as unknown as Record<string, unknown> & { type: string };
    if (key === null) return def.type === 'object' ? Object.keys(def.shape as object) : [];
    if (def.type === 'object') schema = (def.shape as Record<string, AnySchema>)[String(key)];
    else if (def.type === 'array') schema = def.element as AnySchema;
    else return [];
  }
  return [];
}
