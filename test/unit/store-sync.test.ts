import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { readDenyList, writeDenyList } from '../../src/trust/index.js';
import { denyListStore, StoreSync } from '../../src/supervisor/store-sync.js';
import { denyKey, type DenyEntry } from '../../src/trust/index.js';

/** A logger whose events the test can read. */
function capturingLogger() {
  const events: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      events.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  return { log: pino({ level: 'info' }, sink), events };
}

const fingerprint = (hex: string) => `sha256:${Array(32).fill(hex).join(':')}`;
const entry = (hex: string, note: string | null = null): DenyEntry => ({ fingerprint: fingerprint(hex), note, addedAt: '2025-01-01T00:00:00.000Z' });
const keys = (entries: readonly DenyEntry[]) => entries.map(denyKey);

/** The overlay of changes a command could not save, on a real 128 KiB tmpfs (tests run as root). */
describe('a store with changes held in memory only', () => {
  const home = mkdtempSync(join(tmpdir(), 'pcl-store-sync-'));
  const dataDir = join(home, 'fs');
  const filler = join(dataDir, 'filler');
  const fill = () => {
    const fd = openSync(filler, 'w');
    try {
      for (;;) writeSync(fd, Buffer.alloc(16 * 1024));
    } catch (err) {
      assert.equal((err as NodeJS.ErrnoException).code, 'ENOSPC');
    } finally {
      closeSync(fd);
    }
  };
  const free = () => rmSync(filler);

  /** A StoreSync over dataDir/deny-list.json whose "in force" list the test can see. */
  function sync() {
    const { log, events } = capturingLogger();
    const inForce: { entries: readonly DenyEntry[] } = { entries: [] };
    const store = new StoreSync(() => denyListStore(dataDir), readDenyList(dataDir), async (entries) => {
      inForce.entries = entries;
      return 'applied';
    }, log);
    return { store, inForce, events, named: (event: string) => events.filter((e) => e.event === event) };
  }

  before(() => {
    mkdirSync(dataDir);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=128k', 'tmpfs', dataDir]);
  });
  after(() => {
    try {
      execFileSync('umount', [dataDir]);
    } catch {
      execFileSync('umount', ['-l', dataDir]);
    }
    rmSync(home, { recursive: true, force: true });
  });

  test('applies an unsaved entry on top of every later read, saves it once the file can be written, and forgets it once a read holds it', async () => {
    writeDenyList(dataDir, [entry('01')]);
    const { store, inForce, named } = sync();
    fill();
    const answer = await store.sync({ deny: entry('02', 'stolen') });
    assert.equal(answer.ok, true);
    assert.equal(answer.ok && answer.unsaved, 1);
    assert.deepEqual(keys(inForce.entries), keys([entry('01'), entry('02')]));
    assert.equal(named('state_not_persisted').length, 1);
    assert.equal(named('state_not_persisted')[0]?.errno, 'ENOSPC');

    // a command rewrote the file (here: without the entry) and asks for a re-read: the entry stays in force
    free();
    writeDenyList(dataDir, [entry('01'), entry('03')]);
    fill();
    await store.sync(null);
    assert.deepEqual(keys(inForce.entries), keys([entry('01'), entry('03'), entry('02')]));

    free();
    await store.retry();
    assert.deepEqual(keys(readDenyList(dataDir)), keys([entry('01'), entry('03'), entry('02')]), 'saved: the file as it was plus the held entry');
    assert.equal(readDenyList(dataDir)[2]?.note, 'stolen');
    assert.deepEqual(named('state_persisted').map((e) => e.changes), [[`deny ${fingerprint('02')}`]]);
    await store.retry(); // a read now holds it: nothing left to save
    assert.equal(named('state_persisted').length, 1);
    await store.stop();
    assert.equal(named('state_lost').length, 0);
  });

  test('an entry it saved that a stale writer then overwrote is still in force and saved again', async () => {
    writeDenyList(dataDir, []);
    const { store, inForce } = sync();
    fill();
    await store.sync({ deny: entry('0A') });
    free();
    await store.retry();
    assert.deepEqual(keys(readDenyList(dataDir)), keys([entry('0A')]));
    // a command that read the file before that save writes its own list over it, then asks for a re-read
    writeDenyList(dataDir, [entry('0B')]);
    const answer = await store.sync(null);
    assert.deepEqual(keys(inForce.entries), keys([entry('0B'), entry('0A')]), 'never loosened');
    assert.equal(answer.ok && answer.unsaved, 1);
    await store.retry();
    assert.deepEqual(keys(readDenyList(dataDir)), keys([entry('0B'), entry('0A')]));
    await store.stop();
  });

  test('stopping with an entry it could never save logs state_lost with the entry', async () => {
    writeDenyList(dataDir, []);
    const { store, named } = sync();
    fill();
    try {
      await store.sync({ deny: entry('0C') });
      await store.stop();
    } finally {
      free();
    }
    assert.deepEqual(named('state_lost').map((e) => e.changes), [[`deny ${fingerprint('0C')}`]]);
    assert.deepEqual(readDenyList(dataDir), []);
  });
});
