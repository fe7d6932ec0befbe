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
  let value: unknown;
  try {
    // a bounded alias count keeps a "billion laughs" document from expanding without limit
    value = doc.toJS({ maxAliasCount });
  } catch (err) {
    throw valueError(doc, text, source, err);
  }
  return buildConfig(value ?? {}, source, dirname(source));
}

/** Aliases may expand to at most this many copies: the bound of every read of a config (the lenient one too). */
export const maxAliasCount = 50;

/**
 * The YAML library checks aliases (and merge keys) only while it builds the
 * values, and throws plain errors without a position (a ReferenceError for
 * an alias): turned into PCL_CONFIG_YAML here, so that the CLI prints one
 * line and a reload keeps the old config with a coded reason. An alias
 * without an anchor is found again in the document, for its line.
 */
function valueError(doc: YAML.Document, text: string, source: string, err: unknown): PortcullisError {
  const alias = unresolvedAlias(doc);
  if (alias) {
    return new PortcullisError('PCL_CONFIG_YAML', `${source}: YAML alias *${alias.source} at ${positionOf(text, alias.range?.[0])} has no anchor &${alias.source} before it; define the anchor above the alias, or write the value out`, { cause: err });
  }
  const detail = ((err as Error)?.message ?? String(err)).split('\n')[0];
  if (err instanceof ReferenceError) {
    return new PortcullisError('PCL_CONFIG_YAML', `${source}: YAML aliases expand to more than ${maxAliasCount} copies, the limit that stops "billion laughs" documents (${detail}); write the repeated values out, or use fewer aliases`, { cause: err });
  }
  return new PortcullisError('PCL_CONFIG_YAML', `${source}: YAML document cannot be read (${detail}); fix the YAML`, { cause: err });
}

/** The first alias with no anchor of its name before it (in document order, as the library resolves them). */
function unresolvedAlias(doc: YAML.Document): YAML.Alias | null {
  const anchors = new Set<string>();
  let found: YAML.Alias | null = null;
  YAML.visit(doc, {
    Node(_key, node) {
      if (YAML.isAlias(node)) {
        if (!anchors.has(node.source)) {
          found = node;
          return YAML.visit.BREAK;
        }
      } else if (node.anchor) {
        anchors.add(node.anchor);
      }
      return undefined;
    },
  });
  return found;
}

/** "line 3, column 7" of a character offset (1-based, as the library's own errors count). */
function positionOf(text: string, offset: number | undefined): string {
  if (offset === undefined) return 'unknown position';
  let line = 1;
  let start = 0;
  for (let i = text.indexOf('\n'); i >= 0 && i < offset; i = text.indexOf('\n', i + 1)) {
    line++;
    start = i + 1;
  }
  return `line ${line}, column ${offset - start + 1}`;
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
