import assert from 'node:assert/strict';
import { EventEmitter, once } from 'node:events';
import { createServer } from 'node:http';
import { writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { runCli, startCli } from '../helpers/cli-process.js';
import { curl, plaintextFrom, resolveTo, sClient } from '../helpers/clients.js';
import { TestPki, type Ca } from '../helpers/pki.js';
import { startProxy, suiteScope, tempDir, type RunningProxy } from '../helpers/proxy.js';
import { untilPast, whenever } from '../helpers/wait.js';

const pki = new TestPki();
after(() => pki.cleanup());

describe('connection events and metrics', () => {
  let p: RunningProxy;
  let root: Ca;
  const scope = suiteScope();
  const scrape = () => p.proxy.metrics.registry.metrics();
  before(async () => {
    root = pki.root('telemetry-root');
    const leaf = pki.leaf('telemetry', root, { dns: ['api.test'] });
    p = await startProxy(
      scope,
      `listen: { https: "127.0.0.1:0" }
log: { access: off }
sites:
  - hosts: [api.test]
    certificates: [{ cert: ${leaf.chainFile}, key: ${leaf.keyFile} }]
    routes: [{ path: /v1/, upstream: "builtin:whoami" }]
`,
    );
  });

  test('a TLS 1.0 attempt is refused as unsupported_protocol with the version offered and its JA4, and counted as a legacy attempt', async () => {
    const seen = p.logs.length;
    const r = await sClient(p.port, ['-tls1', '-cipher', 'DEFAULT:@SECLEVEL=0', '-servername', 'api.test']);
    assert.equal(r.protocol, null);
    const event = await p.waitForLog((l) => l.event === 'handshake_failed' && l.reason === 'unsupported_protocol', { after: seen });
    assert.equal(event.offered, 'TLSv1.0');
    assert.match(String(event.ja4), /^t10d\d{4}00_[0-9a-f]{12}_[0-9a-f]{12}$/);
    assert.match(String(event.ja3), /^[0-9a-f]{32}$/);
    assert.equal(event.weakness, 'legacy_protocol');
    assert.equal(event.sni, 'api.test');
    const metrics = await scrape();
    assert.match(metrics, /portcullis_legacy_protocol_attempts_total\{offered="TLSv1\.0"\} 1/);
    assert.match(metrics, /portcullis_connections_refused_total\{reason="unsupported_protocol"\} 1/);
  });

  test('an accepted connection has one event with version, cipher, group, ALPN, SNI, resumption, handshake time and JA4; its requests are counted and timed', async () => {
    const seen = p.logs.length;
    const ok = await curl([...resolveTo('api.test', p.port), '--cacert', root.certFile, '--http1.1', '--tlsv1.3', '-o', '/dev/null', '-w', '%{http_code}', `https://api.test:${p.port}/v1/a`, '-o', '/dev/null', `https://api.test:${p.port}/nowhere`]);
    assert.equal(ok.stdout, '200404');
    const accepted = p.logs.slice(seen).filter((l) => l.event === 'connection_accepted');
    assert.equal(accepted.length, 1, 'one event for the connection both requests used');
    const event = accepted[0] as Record<string, unknown>;
    assert.equal(event.tlsVersion, 'TLSv1.3');
    assert.equal(event.cipher, 'TLS_AES_128_GCM_SHA256');
    assert.equal(event.alpn, 'http/1.1');
    assert.equal(event.sni, 'api.test');
    assert.equal(event.resumed, false);
    assert.equal(typeof event.handshakeMs, 'number');
    assert.match(String(event.ja4), /^t13d\d{4}h1_/);
    assert.match(String(event.ja3), /^[0-9a-f]{32}$/);
    assert.equal(event.weakness, null, 'curl offers TLS 1.3 with its suites');
    // Debian 12's curl links OpenSSL 3.0: no ML-KEM, whichever runtime the proxy is on
    assert.equal(event.postQuantum, false);
    assert.equal(event.group, 'X25519');

    const metrics = await scrape();
    assert.match(metrics, /portcullis_handshakes_total\{version="TLSv1\.3",cipher="TLS_AES_128_GCM_SHA256",group="X25519",resumed="false"\} 1/);
    assert.match(metrics, /portcullis_requests_total\{site="api\.test",route="\/v1\/",status="200"\} 1/);
    assert.match(metrics, /portcullis_requests_total\{site="api\.test",route="",status="404"\} 1/);
    assert.match(metrics, /portcullis_request_duration_seconds_count\{site="api\.test"\} 2/);
    assert.match(metrics, /portcullis_active_connections \d+/);
  });
});


describe('the detector', () => {
  test('blocks a source after a burst of refused handshakes while others keep working, alerts the webhook, lets the block expire, and never blocks the allow-list', async (t) => {
    const alerts: Record<string, unknown>[] = [];
    const received = new EventEmitter();
    const webhook = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        alerts.push(JSON.parse(body) as Record<string, unknown>);
        received.emit('alert');
        res.end();
      });
    });
    webhook.listen(0, '127.0.0.1');
    await once(webhook, 'listening');
    t.after(() => webhook.close());
    const root = pki.root('detector-root');
    const leaf = pki.leaf('detector', root, { dns: ['api.test'] });
    const p = await startProxy(
      t,
      `listen: { https: "127.0.0.1:0" }
log: { access: off }
detector: { threshold: 3, window: 1m, blockFor: 2s, allow: ["127.0.0.3"], webhook: "http://127.0.0.1:${(webhook.address() as AddressInfo).port}/alerts" }
sites:
  - hosts: [api.test]
    certificates: [{ cert: ${leaf.chainFile}, key: ${leaf.keyFile} }]
    routes: [{ path: /, upstream: "builtin:whoami" }]
`,
    );
    for (let i = 0; i < 3; i++) assert.match(await plaintextFrom('127.0.0.2', p.port), /^HTTP\/1\.1 400 /, 'refused, but answered, until the threshold');
    const blocked = await p.waitForLog((l) => l.event === 'source_blocked');
    assert.equal(blocked.address, '127.0.0.2');
    assert.equal(blocked.lastReason, 'plaintext_http');
    assert.equal(await plaintextFrom('127.0.0.2', p.port), '', 'a blocked source is closed at accept: not even the plain-HTTP answer');
    const ok = await curl([...resolveTo('api.test', p.port), '--cacert', root.certFile, '-o', '/dev/null', '-w', '%{http_code}', `https://api.test:${p.port}/`]);
    assert.equal(ok.stdout, '200', '127.0.0.1 keeps working');
    const metrics = await p.proxy.metrics.registry.metrics();
    assert.match(metrics, /portcullis_connections_refused_total\{reason="blocked"\} 1/);
    assert.match(metrics, /portcullis_sources_blocked_total 1/);

    for (let i = 0; i < 5; i++) assert.match(await plaintextFrom('127.0.0.3', p.port), /^HTTP\/1\.1 400 /, 'the allow-listed source is never blocked');
    // waiting on facts: the webhook's alert, then the end of the two-second block at the time it announced
    const alert = await whenever(received, 'alert', () => alerts[0], { what: 'an alert at the webhook' });
    assert.equal(alert.event, 'source_blocked');
    assert.equal(alert.address, '127.0.0.2');
    await untilPast(Date.parse(String(blocked.until)));
    assert.match(await plaintextFrom('127.0.0.2', p.port), /^HTTP\/1\.1 400 /, 'the block expired at its until');
  });
});

describe('the detector per JA4', () => {
  test('flags a fingerprint that keeps failing from any source and, with detector.fingerprint.block, refuses it before TLS while other clients from the same address get through', async (t) => {
    const root = pki.root('ja4-root');
    const leaf = pki.leaf('ja4', root, { dns: ['api.test'] });
    const p = await startProxy(
      t,
      `listen: { https: "127.0.0.1:0" }
log: { access: off }
detector: { threshold: 1000, allow: [], fingerprint: { threshold: 3, block: true } }
sites:
  - hosts: [api.test]
    certificates: [{ cert: ${leaf.chainFile}, key: ${leaf.keyFile} }]
    routes: [{ path: /, upstream: "builtin:whoami" }]
`,
    );
    const legacy = () => sClient(p.port, ['-tls1', '-cipher', 'DEFAULT:@SECLEVEL=0', '-servername', 'api.test']);
    for (let i = 0; i < 3; i++) assert.equal((await legacy()).protocol, null);
    const flagged = await p.waitForLog((l) => l.event === 'fingerprint_flagged');
    assert.match(String(flagged.ja4), /^t10d/);
    assert.equal(flagged.blocked, true);
    assert.equal(flagged.failures, 3);
    const before = await p.proxy.metrics.registry.metrics();
    assert.doesNotMatch(before, /portcullis_connections_refused_total\{reason="blocked"\}/);
    await legacy();
    const after = await p.proxy.metrics.registry.metrics();
    assert.match(after, /portcullis_connections_refused_total\{reason="blocked"\} 1/, 'the fourth attempt with that JA4 is refused as blocked');
    assert.match(after, /portcullis_connections_refused_total\{reason="unsupported_protocol"\} 3/, 'and never reached the TLS stack');
    assert.match(after, /portcullis_fingerprints_flagged_total\{blocked="true"\} 1/);
    const ok = await curl([...resolveTo('api.test', p.port), '--cacert', root.certFile, '-o', '/dev/null', '-w', '%{http_code}', `https://api.test:${p.port}/`]);
    assert.equal(ok.stdout, '200', 'another fingerprint from the same address is served');
  });
});

describe('the weak-client report', () => {
  test('lists the sources, JA4 and names that offered TLS < 1.2, no acceptable suite, no TLS 1.3 or no post-quantum key share, merged over workers, read from a running instance', async (t) => {
    const root = pki.root('weak-root');
    const leaf = pki.leaf('weak', root, { dns: ['api.test'] });
    const dir = tempDir(t);
    const file = `${dir}/portcullis.yaml`;
    writeFileSync(
      file,
      `listen: { https: "127.0.0.1:0" }
workers: 2
log: { access: off }
sites:
  - hosts: [api.test]
    certificates: [{ cert: ${leaf.chainFile}, key: ${leaf.keyFile} }]
    routes: [{ path: /, upstream: "builtin:whoami" }]
`,
    );
    const cli = startCli(t, ['start', '--config', file], dir);
    const port = Number((await cli.waitFor(/"https":"127\.0\.0\.1:(\d+)".*"workers":2/))[1]);
    for (let i = 0; i < 3; i++) assert.equal((await sClient(port, ['-tls1', '-cipher', 'DEFAULT:@SECLEVEL=0', '-servername', 'api.test'])).protocol, null);
    assert.equal((await sClient(port, ['-tls1_2', '-cipher', 'AES128-SHA:@SECLEVEL=0', '-servername', 'api.test'])).protocol, null, 'CBC with RSA key exchange only: no shared cipher');
    assert.equal((await sClient(port, ['-tls1_2', '-servername', 'api.test'])).protocol, 'TLSv1.2', 'a TLS 1.2-only client is served');
    const modern = await curl([...resolveTo('api.test', port), '--cacert', root.certFile, '-o', '/dev/null', '-w', '%{http_code}', `https://api.test:${port}/`]);
    assert.equal(modern.stdout, '200');

    // the instance is running: the report asks it to write what its workers hold
    const report = await runCli(['report', 'weak-clients', '--config', file, '--since', '1h', '--json']);
    assert.equal(report.code, 0, report.stderr);
    const entries = JSON.parse(report.stdout) as { weakness: string; address: string; sni: string; ja4: string; offered: string; count: number; refused: number; lastReason: string | null; lastSeen: string }[];
    assert.deepEqual(
      entries.map((e) => [e.weakness, e.address, e.sni, e.offered, e.count, e.refused, e.lastReason]),
      [
        ['legacy_protocol', '127.0.0.1', 'api.test', 'TLSv1.0', 3, 3, 'unsupported_protocol'],
        ['weak_ciphers_only', '127.0.0.1', 'api.test', 'TLSv1.2', 1, 1, 'no_shared_cipher'],
        ['no_tls13', '127.0.0.1', 'api.test', 'TLSv1.2', 1, 0, null],
        ['no_pq_key_share', '127.0.0.1', 'api.test', 'TLSv1.3', 1, 0, null],
      ],
      'most urgent first; the TLS 1.3 client (curl on OpenSSL 3.0) last, for its classical key share only',
    );
    assert.match(entries[0]?.ja4 ?? '', /^t10d/);
    assert.match(entries[2]?.ja4 ?? '', /^t12d/);

    const text = await runCli(['report', 'weak-clients', '--config', file]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /legacy_protocol \(1\): offered nothing newer than TLS 1\.1[\s\S]*127\.0\.0\.1 +TLSv1\.0 +api\.test +t10d\S+ +3 +3 +unsupported_protocol/);
    assert.match(text.stdout, /no_tls13 \(1\):[\s\S]*TLSv1\.2 +api\.test +t12d\S+ +1 +0 +accepted/);

    // facts, not timing: once the last sighting is more than a second old, a one-second window excludes it
    await untilPast(Math.max(...entries.map((e) => Date.parse(e.lastSeen))) + 1000);
    const recent = await runCli(['report', 'weak-clients', '--config', file, '--since', '1s']);
    assert.match(recent.stdout, /^no client offered weak TLS in the last 1s/);
    const unknown = await runCli(['report', 'strong-clients', '--config', file]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /there is no report "strong-clients"; use: portcullis report weak-clients/);
  });
});
