import assert from 'node:assert/strict';
import { readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
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

test('two processes writing to one slowly read pipe lose no line and splice none', async () => {
  const writer = join(import.meta.dirname, '..', 'fixtures', 'access-log-writer.ts');
  const child = spawn(process.execPath, ['--import', 'tsx', writer, 'parent', '20000'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  // a slow reader: the pipe fills and the writers meet EAGAIN
  child.stdout.on('data', (d: Buffer) => {
    text += d.toString();
    child.stdout.pause();
    setTimeout(() => child.stdout.resume(), 2);
  });
  const code = await new Promise((resolve) => child.on('close', resolve));
  assert.equal(code, 0, stderr);
  const parsed = text.trim().split('\n').map((l) => JSON.parse(l) as { writer: string; n: number });
  for (const writer of ['a', 'b']) {
    const ns = parsed.filter((l) => l.writer === writer).map((l) => l.n);
    assert.equal(ns.length, 20000, `writer ${writer} lost lines`);
    assert.deepEqual(ns, Array.from({ length: 20000 }, (_, i) => i), `writer ${writer} in order`);
  }
});
