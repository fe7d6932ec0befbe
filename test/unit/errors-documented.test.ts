import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import { errorCatalog, reasonCatalog } from '../../src/errors.js';

const root = join(import.meta.dirname, '..', '..');
const doc = readFileSync(join(root, 'docs', 'errors.md'), 'utf8');

const sourceFiles = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));

test('every PCL_ code used in src/ is in the error catalog', () => {
  const missing = new Map<string, Set<string>>();
  for (const file of sourceFiles(join(root, 'src'))) {
    for (const [code] of readFileSync(file, 'utf8').matchAll(/\bPCL_[A-Z0-9_]*[A-Z0-9]\b/g)) {
      if (!Object.hasOwn(errorCatalog, code)) missing.set(code, (missing.get(code) ?? new Set()).add(relative(root, file)));
    }
  }
  const report = [...missing].map(([code, files]) => `${code} (${[...files].join(', ')})`);
  assert.deepEqual(report, [], 'add these codes to errorCatalog in src/errors.ts and document them in docs/errors.md');
});

test('every error code is documented in docs/errors.md', () => {
  for (const code of Object.keys(errorCatalog)) assert.match(doc, new RegExp(`\\| \`${code}\` \\|`), code);
});

test('every reason code is documented in docs/errors.md with its HTTP status', () => {
  for (const [reason, { status }] of Object.entries(reasonCatalog)) {
    const row = new RegExp(`\\| \`${reason}\` \\| ${status === 0 ? '[^|]+' : String(status)} \\|`);
    assert.match(doc, row, reason);
  }
});
