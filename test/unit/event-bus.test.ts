import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, describe, test } from 'node:test';
import { pino } from 'pino';
import { weakClientsFile } from '../../src/state/index.js';
import { readWeakClients, WeakClients } from '../../src/telemetry/index.js';
import { createLogger, EventBus } from '../../src/observe/index.js';

/** A logger whose lines the test can read. */
function capturingLogger(level = 'info') {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  return { log: pino({ level }, sink), lines };
}

describe('the event bus', () => {
  test('delivers each event to the log at its level and to every subscriber, in order, with its time', () => {
    const { log, lines } = capturingLogger('info');
    const bus = new EventBus(log);
    const a: string[] = [];
    const b: string[] = [];
    bus.subscribe((e) => a.push(`${e.event}:${String(e.n)}`));
    const off = bus.subscribe((e) => b.push(`${e.event}:${String(e.n)}`));
    bus.publish('info', { event: 'one', n: 1 }, 'first');
    off();
    bus.publish('debug', { event: 'two', n: 2 }, 'second');
    assert.deepEqual(a, ['one:1', 'two:2']);
    assert.deepEqual(b, ['one:1'], 'unsubscribed after the first');
    assert.deepEqual(lines.map((l) => l.event), ['one'], 'the debug event is below the log level, yet delivered');
    assert.match(String(bus.recent()[0]?.time), /^\d{4}-\d\d-\d\dT/);
  });

  test('keeps the most recent events in a bounded ring, oldest first', () => {
    const bus = new EventBus(createLogger('silent'), 3);
    for (let n = 1; n <= 5; n++) bus.publish('info', { event: 'e', n }, 'm');
    assert.deepEqual(bus.recent().map((e) => e.n), [3, 4, 5]);
  });

  test('a throwing subscriber is reported once and does not stop delivery to the others', () => {
    const { log, lines } = capturingLogger('info');
    const bus = new EventBus(log);
    const seen: unknown[] = [];
    bus.subscribe(() => {
      throw new Error('boom');
    });
    bus.subscribe((e) => seen.push(e.n));
    bus.publish('info', { event: 'e', n: 1 }, 'm');
    bus.publish('info', { event: 'e', n: 2 }, 'm');
    assert.deepEqual(seen, [1, 2]);
    assert.equal(lines.filter((l) => l.event === 'event_subscriber_failed').length, 1);
  });
});

describe('the weak-client summary', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pcl-weak-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const event = (remoteAddress: string, weakness: string | null, reason: string | null, extra: Record<string, unknown> = {}) => ({
    event: reason === null ? 'connection_accepted' : 'handshake_failed',
    reason,
    remoteAddress,
    site: 'api',
    sni: 'api.test',
    ja4: 't10d_x',
    ja3: null,
    offered: 'TLSv1.0',
    weakness,
    ...extra,
  });

  test('folds weak connection events per weakness, source, JA4 and name; writes one file per process, mode 0600; readers merge the processes', async () => {
    const log = createLogger('silent');
    const busA = new EventBus(log);
    const busB = new EventBus(log);
    const a = new WeakClients(weakClientsFile(dir, 'worker-1'), busA, log);
    const b = new WeakClients(weakClientsFile(dir, 'worker-2'), busB, log);
    busA.publish('info', event('192.0.2.1', 'legacy_protocol', 'unsupported_protocol'), 'm');
    busA.publish('info', event('192.0.2.1', 'legacy_protocol', 'unsupported_protocol'), 'm');
    busA.publish('info', event('192.0.2.2', null, null, { offered: 'TLSv1.3' }), 'm');
    busA.publish('info', { ...event('192.0.2.1', 'legacy_protocol', 'revoked'), event: 'client_cert_rejected' }, 'm');
    busB.publish('info', event('192.0.2.1', 'legacy_protocol', 'unsupported_protocol'), 'm');
    busB.publish('info', event('192.0.2.3', 'no_tls13', null, { offered: 'TLSv1.2', ja4: 't12d_y' }), 'm');
    await Promise.all([a.stop(), b.stop()]);
    assert.equal(statSync(weakClientsFile(dir, 'worker-1')).mode & 0o777, 0o600);
    assert.equal((JSON.parse(readFileSync(weakClientsFile(dir, 'worker-1'), 'utf8')) as { entries: unknown[] }).entries.length, 1, 'the strong client and the certificate refusal are not weak-client entries');
    const merged = readWeakClients(dir).sort((x, y) => x.address.localeCompare(y.address));
    assert.deepEqual(
      merged.map((e) => [e.weakness, e.address, e.ja4, e.sni, e.count, e.refused, e.lastReason, e.offered]),
      [
        ['legacy_protocol', '192.0.2.1', 't10d_x', 'api.test', 3, 3, 'unsupported_protocol', 'TLSv1.0'],
        ['no_tls13', '192.0.2.3', 't12d_y', 'api.test', 1, 0, null, 'TLSv1.2'],
      ],
    );
  });

  test('entries of the wrong shape in a summary file are skipped by the report and at start, not fatal', async () => {
    const folder = join(dir, 'shapes');
    const good = { weakness: 'legacy_protocol', address: '192.0.2.9', ja4: null, sni: null, offered: 'TLSv1.0', firstSeen: '2026-01-01T00:00:00.000Z', lastSeen: new Date().toISOString(), count: 2, refused: 2, lastReason: 'unsupported_protocol', sites: [] };
    mkdirSync(join(folder, 'weak-clients'), { recursive: true });
    const file = weakClientsFile(folder, 'worker-1');
    writeFileSync(file, JSON.stringify({ version: 1, entries: [null, 7, 'x', { address: '192.0.2.8' }, { ...good, count: '2' }, { ...good, sites: [1] }, good] }));
    writeFileSync(weakClientsFile(folder, 'worker-2'), 'null');
    assert.deepEqual(readWeakClients(folder), [good]);
    const log = createLogger('silent');
    const summary = new WeakClients(file, new EventBus(log), log);
    assert.deepEqual(summary.entries(), [good]);
    await summary.stop();
  });

  test('a summary that could not be written is written at the next flush, with no new event in between', async () => {
    const file = weakClientsFile(join(dir, 'retry'), 'worker-1');
    mkdirSync(file, { recursive: true }); // a folder where the file goes: the write fails
    const { log, lines } = capturingLogger('error');
    const bus = new EventBus(log);
    const summary = new WeakClients(file, bus, log);
    bus.publish('info', event('192.0.2.1', 'legacy_protocol', 'unsupported_protocol'), 'm');
    await summary.flush();
    assert.equal(lines.filter((l) => l.event === 'summary_write_failed').length, 1);
    rmSync(file, { recursive: true });
    await summary.stop();
    assert.equal((JSON.parse(readFileSync(file, 'utf8')) as { entries: unknown[] }).entries.length, 1);
  });
});
