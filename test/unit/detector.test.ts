import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { parseConfigText } from '../../src/config/index.js';
import type { ClientHello } from '../../src/edge/client-hello.js';
import { weakOfferOf } from '../../src/edge/weak-offer.js';
import { ProbeGuard } from '../../src/telemetry/index.js';
import { createLogger, EventBus, Metrics, type TelemetryEvent } from '../../src/observe/index.js';
import { Detector } from '../../src/telemetry/detector.js';
import { TestPki } from '../helpers/pki.js';

const settings = { threshold: 3, windowMs: 60_000, blockMs: 600_000 };

describe('the detector', () => {
  test('blocks a key at the threshold within the window, for blockFor, and only that key', () => {
    const d = new Detector(settings);
    const t0 = 1_000_000;
    assert.equal(d.failure('192.0.2.1', 'unknown_sni', t0), null);
    assert.equal(d.failure('192.0.2.1', 'unknown_sni', t0 + 1000), null);
    const block = d.failure('192.0.2.1', 'no_shared_cipher', t0 + 2000);
    assert.deepEqual(block, { key: '192.0.2.1', failures: 3, until: t0 + 2000 + 600_000, lastReason: 'no_shared_cipher' });
    assert.equal(d.isBlocked('192.0.2.1', t0 + 3000), true);
    assert.equal(d.isBlocked('192.0.2.2', t0 + 3000), false);
    assert.equal(d.failure('192.0.2.1', 'unknown_sni', t0 + 4000), null, 'a blocked key does not trigger a second block');
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
});

/** A handshake_failed event as the connection events publish it. */
const refusal = (remoteAddress: string, ja4: string | null) => ({ event: 'handshake_failed', reason: 'no_shared_cipher', remoteAddress, site: null, sni: 'api.test', ja4, ja3: null, offered: 'TLSv1.2', weakness: null });

const pki = new TestPki();
after(() => pki.cleanup());
let leaf: { chainFile: string; keyFile: string } | null = null;

function guard(detectorYaml: string) {
  leaf ??= pki.leaf('guard', pki.root('guard-root'), { dns: ['api.test'] });
  const config = parseConfigText(
    `listen: { https: "127.0.0.1:0" }\ndetector: ${detectorYaml}\nsites: [{ hosts: [api.test], certificates: [{ cert: ${leaf.chainFile}, key: ${leaf.keyFile} }], routes: [{ path: /, upstream: "builtin:whoami" }] }]\n`,
    'inline.yaml',
  );
  const log = createLogger('silent');
  const bus = new EventBus(log);
  const alerts: TelemetryEvent[] = [];
  bus.subscribe((e) => {
    if (e.event === 'source_blocked' || e.event === 'fingerprint_flagged') alerts.push(e);
  });
  const metrics = new Metrics();
  return { guard: new ProbeGuard(config, metrics, bus, log), bus, alerts, metrics };
}

describe('the probe guard (detector on the event bus)', () => {
  test('counts per source and per JA4: many sources under their threshold flag the JA4 they share, without blocking it by default', () => {
    const g = guard('{ threshold: 5, fingerprint: { threshold: 4 }, allow: ["10.0.0.0/8"] }');
    for (let i = 1; i <= 4; i++) g.bus.publish('info', refusal(`192.0.2.${i}`, 't12d_shared'), 'refused');
    assert.deepEqual(g.alerts.map((a) => [a.event, a.ja4, a.blocked, a.failures, a.lastAddress]), [['fingerprint_flagged', 't12d_shared', false, 4, '192.0.2.4']]);
    assert.equal(g.guard.fingerprintBlocked('t12d_shared', '192.0.2.9'), false, 'detector.fingerprint.block is off by default');
    assert.equal(g.guard.blocked('192.0.2.1'), false, 'no source reached its own threshold');
  });

  test('with detector.fingerprint.block the flagged JA4 is refused for every source except allow-listed ones', () => {
    const g = guard('{ threshold: 50, fingerprint: { threshold: 3, block: true }, allow: ["10.0.0.0/8"] }');
    for (let i = 1; i <= 3; i++) g.bus.publish('info', refusal(`192.0.2.${i}`, 't12d_scanner'), 'refused');
    assert.equal(g.guard.fingerprintBlocked('t12d_scanner', '198.51.100.7'), true);
    assert.equal(g.guard.fingerprintBlocked('t12d_scanner', '10.1.1.1'), false, 'allow-listed sources are never blocked');
    assert.equal(g.guard.fingerprintBlocked('t13d_other', '198.51.100.7'), false);
    assert.equal(g.alerts[0]?.blocked, true);
  });

  test('allow-listed sources never count, and blocked-connection and pending-certificate refusals count for nobody', () => {
    const g = guard('{ threshold: 2, fingerprint: { threshold: 2 }, allow: ["10.0.0.0/8"] }');
    for (let i = 0; i < 5; i++) g.bus.publish('info', refusal('10.9.9.9', 'x'), 'refused');
    for (let i = 0; i < 5; i++) g.bus.publish('info', { ...refusal('192.0.2.50', 'y'), reason: 'blocked' }, 'refused');
    for (let i = 0; i < 5; i++) g.bus.publish('info', { ...refusal('192.0.2.51', 'z'), reason: 'certificate_pending' }, 'refused');
    assert.deepEqual(g.alerts, []);
    assert.equal(g.guard.blocked('10.9.9.9'), false);
  });

  test('a source over its threshold is blocked once, alerted and counted', async () => {
    const g = guard('{ threshold: 2 }');
    for (let i = 0; i < 3; i++) g.bus.publish('info', refusal('203.0.113.5', null), 'refused');
    assert.equal(g.guard.blocked('203.0.113.5'), true);
    assert.deepEqual(g.alerts.map((a) => [a.event, a.address]), [['source_blocked', '203.0.113.5']]);
    assert.match(await g.metrics.registry.metrics(), /portcullis_sources_blocked_total 1/);
  });
});

describe('weak offers', () => {
  const hello = (legacyVersion: number, supportedVersions: number[], cipherSuites: number[]) => ({ legacyVersion, supportedVersions, cipherSuites }) as unknown as ClientHello;
  test('are classified from the versions and suites offered, GREASE ignored', () => {
    assert.equal(weakOfferOf(hello(0x0301, [], [0xc013, 0x002f])), 'legacy_protocol');
    assert.equal(weakOfferOf(hello(0x0303, [0x0a0a, 0x0302, 0x0301], [0x1301])), 'legacy_protocol');
    assert.equal(weakOfferOf(hello(0x0303, [], [0xc013, 0x009c, 0x002f])), 'weak_ciphers_only', 'CBC and RSA key exchange only');
    assert.equal(weakOfferOf(hello(0x0303, [], [0x009c, 0xc02f])), 'no_tls13');
    assert.equal(weakOfferOf(hello(0x0303, [0x2a2a, 0x0304, 0x0303], [0x1301, 0xc02b])), null);
    assert.equal(weakOfferOf(hello(0x0303, [0x0304, 0x0303], [0xc02b])), 'no_tls13', 'TLS 1.3 offered without a TLS 1.3 suite cannot negotiate it');
  });
});
