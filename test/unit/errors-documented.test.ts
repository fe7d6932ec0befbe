import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { errorCatalog, reasonCatalog } from '../../src/errors.js';

const doc = readFileSync(join(import.meta.dirname, '..', '..', 'docs', 'errors.md'), 'utf8');

test('every error code is documented in docs/errors.md', () => {
  for (const code of Object.keys(errorCatalog)) assert.match(doc, new RegExp(`\\| \`${code}\` \\|`), code);
});

test('every reason code is documented in docs/errors.md with its HTTP status', () => {
  for (const [reason, { status }] of Object.entries(reasonCatalog)) {
    const row = new RegExp(`\\| \`${reason}\` \\| ${status === 0 ? '[^|]+' : String(status)} \\|`);
    assert.match(doc, row, reason);
  }
});
