import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { curl, resolveTo, sClient } from '../helpers/clients.js';
import { TestPki, type Ca } from '../helpers/pki.js';
import { startProxy, suiteScope, type RunningProxy } from '../helpers/proxy.js';

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
    const metrics = await scrape();
    assert.match(metrics, /portcullis_legacy_protocol_attempts_total\{offered="TLSv1\.0"\} 1/);
    assert.match(metrics, /portcullis_connections_refused_total\{reason="unsupported_protocol"\} 1/);
  });

  test('an accepted connection has one event with version, cipher, ALPN, SNI, resumption, handshake time and JA4; its requests are counted and timed', async () => {
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

    const metrics = await scrape();
    assert.match(metrics, /portcullis_handshakes_total\{version="TLSv1\.3",cipher="TLS_AES_128_GCM_SHA256",resumed="false"\} 1/);
    assert.match(metrics, /portcullis_requests_total\{site="api\.test",route="\/v1\/",status="200"\} 1/);
    assert.match(metrics, /portcullis_requests_total\{site="api\.test",route="",status="404"\} 1/);
    assert.match(metrics, /portcullis_request_duration_seconds_count\{site="api\.test"\} 2/);
    assert.match(metrics, /portcullis_active_connections \d+/);
  });
});

/** One plain-HTTP request to the TLS port from `localAddress`: what came back before the close ('' when nothing did). */
function plaintextFrom(localAddress: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    let answer = '';
    const socket = connect({ host: '127.0.0.1', port, localAddress }, () => socket.write('GET / HTTP/1.1\r\nHost: api.test\r\n\r\n'));
    socket.on('data', (d: Buffer) => (answer += d.toString('latin1')));
    socket.on('error', () => {});
    socket.on('close', () => resolve(answer));
  });
}

describe('the detector', () => {
  test('blocks a source after a burst of refused handshakes while others keep working, alerts the webhook, lets the block expire, and never blocks the allow-list', async (t) => {
    const alerts: Record<string, unknown>[] = [];
    const webhook = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        alerts.push(JSON.parse(body) as Record<string, unknown>);
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
    // waiting on facts: the webhook's alert, then the end of the two-second block
    for (let i = 0; i < 100 && alerts.length === 0; i++) await delay(50);
    assert.equal(alerts[0]?.event, 'source_blocked');
    assert.equal(alerts[0]?.address, '127.0.0.2');
    let answer = '';
    for (let i = 0; i < 100 && answer === ''; i++) {
      await delay(100);
      answer = await plaintextFrom('127.0.0.2', p.port);
    }
    assert.match(answer, /^HTTP\/1\.1 400 /, 'the block expired');
  });
});
