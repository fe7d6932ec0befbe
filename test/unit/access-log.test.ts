import assert from 'node:assert/strict';
import { readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { createAccessLog } from '../../src/telemetry/access-log.js';
import { tempDir } from '../helpers/proxy.js';

const lines = (file: string) =>
  readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);

test('writes JSON lines in batches, all of them by flush, and starts a new file after reopen', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'logs', 'access.log');
  const log = createAccessLog(file);
  for (let i = 0; i < 1000; i++) log.write(`"n":${i},"path":${JSON.stringify(`/a"b\\${i}`)}`);
  await log.flush();
  const first = lines(file);
  assert.equal(first.length, 1000);
  assert.deepEqual(
    first.map((l) => l.n),
    Array.from({ length: 1000 }, (_, i) => i),
    'in order, none lost',
  );
  assert.equal(first[7]?.log, 'access');
  assert.equal(first[7]?.path, '/a"b\\7');
  assert.match(String(first[0]?.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);

  renameSync(file, `${file}.1`);
  log.reopen();
  log.write('"n":1000');
  await log.flush();
  assert.deepEqual(lines(file).map((l) => l.n), [1000]);
  assert.equal(lines(`${file}.1`).length, 1000);
});
