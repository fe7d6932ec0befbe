import assert from 'node:assert/strict';
import { BlockList } from 'node:net';
import { describe, test } from 'node:test';
import { Detector } from '../../src/telemetry/detector.js';

const allow = new BlockList();
allow.addSubnet('10.0.0.0', 8, 'ipv4');
const settings = { threshold: 3, windowMs: 60_000, blockMs: 600_000, allow };

describe('the detector', () => {
  test('blocks at the threshold within the window, for blockFor, and only that address', () => {
    const d = new Detector(settings);
    const t0 = 1_000_000;
    assert.equal(d.failure('192.0.2.1', 'unknown_sni', t0), null);
    assert.equal(d.failure('192.0.2.1', 'unknown_sni', t0 + 1000), null);
    const block = d.failure('192.0.2.1', 'no_shared_cipher', t0 + 2000);
    assert.deepEqual(block, { address: '192.0.2.1', failures: 3, until: t0 + 2000 + 600_000, lastReason: 'no_shared_cipher' });
    assert.equal(d.isBlocked('192.0.2.1', t0 + 3000), true);
    assert.equal(d.isBlocked('192.0.2.2', t0 + 3000), false);
    assert.equal(d.isBlocked('192.0.2.1', t0 + 2000 + 600_000), false, 'the block ends');
  });

  test('failures older than the window do not count', () => {
    const d = new Detector(settings);
    d.failure('2001:db8::1', 'unknown_sni', 0);
    d.failure('2001:db8::1', 'unknown_sni', 1000);
    assert.equal(d.failure('2001:db8::1', 'unknown_sni', 61_500), null, 'the first two fell out of the window');
    assert.equal(d.failure('2001:db8::1', 'unknown_sni', 62_000), null);
    assert.notEqual(d.failure('2001:db8::1', 'unknown_sni', 62_500), null);
  });

  test('never blocks an allow-listed address', () => {
    const d = new Detector(settings);
    for (let i = 0; i < 10; i++) assert.equal(d.failure('10.1.2.3', 'unknown_sni', i), null);
    assert.equal(d.isBlocked('10.1.2.3', 20), false);
  });
});
