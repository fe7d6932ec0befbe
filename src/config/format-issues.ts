import type { z } from 'zod';
import type { ConfigIssue } from '../errors.js';

type PathKey = PropertyKey;

/** `['sites', 1, 'routes', 0, 'upstream']` → `sites[1].routes[0].upstream`. */
export function formatPath(path: readonly PathKey[]): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else out += out ? `.${String(key)}` : String(key);
  }
  return out;
}

function valueAt(root: unknown, path: readonly PathKey[]): unknown {
  let v = root;
  for (const key of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[key];
  }
  return v;
}

/** A short, safe rendering of a config value for messages. */
export function describeValue(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (typeof v === 'string') return JSON.stringify(v.length > 80 ? `${v.slice(0, 77)}...` : v);
  if (Array.isArray(v)) return 'a list';
  if (v === null) return 'null';
  if (typeof v === 'object') return 'a mapping';
  return String(v);
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0] as number;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j] as number;
      row[j] = Math.min(cur + 1, (row[j - 1] as number) + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length] as number;
}

function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return best;
}

/**
 * Of a union's branches, the issues of the one whose type matched: a branch
 * that fails on the type (or literal value) of the value itself did not match
 * at all. When none matched, the union's own message says what is expected.
 */
function matchedUnionBranch(branches: readonly (readonly z.core.$ZodIssue[])[]): readonly z.core.$ZodIssue[] | undefined {
  return branches.find((issues) => issues.every((i) => i.path.length > 0 || (i.code !== 'invalid_type' && i.code !== 'invalid_value')));
}

function collect(issue: z.core.$ZodIssue, basePath: readonly PathKey[], root: unknown, knownKeys: (path: readonly PathKey[]) => string[], out: ConfigIssue[]): void {
  const path = [...basePath, ...issue.path];
  if (issue.code === 'invalid_union') {
    const branch = matchedUnionBranch(issue.errors);
    if (branch) {
      for (const sub of branch) collect(sub, path, root, knownKeys, out);
      return;
    }
  }
  if (issue.code === 'unrecognized_keys') {
    const known = knownKeys(path);
    for (const key of issue.keys) {
      const guess = closest(key, known);
      const hint = guess ? `did you mean "${guess}"?` : known.length ? `known keys here: ${known.join(', ')}` : 'remove it';
      out.push({ path: formatPath([...path, key]), message: `unknown key "${key}"; ${hint}` });
    }
    return;
  }
  const value = valueAt(root, path);
  const got = value === undefined ? 'missing' : `got ${describeValue(value)}`;
  out.push({ path: formatPath(path), message: `${got}; ${issue.message}` });
}

/** Turns zod issues into config issues that name the key, the bad value and the fix. */
export function formatZodIssues(
  issues: readonly z.core.$ZodIssue[],
  root: unknown,
  knownKeys: (path: readonly PathKey[]) => string[],
): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  for (const issue of issues) collect(issue, [], root, knownKeys, out);
  return out;
}
