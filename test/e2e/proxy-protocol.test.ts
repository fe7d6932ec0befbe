import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect as tlsConnect } from 'node:tls';
import { curl, type RunResult } from '../helpers/clients.js';
import { startHaproxy } from '../helpers/haproxy.js';
import { TestPki, type Ca } from '../helpers/pki.js';
import { startProxy, suiteScope, type RunningProxy } from '../helpers/proxy.js';
import { startUpstream, type EchoAnswer } from '../helpers/upstream.js';

/*
 * Portcullis behind Debian's HAProxy in TCP mode (`send-proxy`, `send-proxy-v2`),
 * as instances run behind an L4 balancer. HAProxy connects from 127.0.0.1, the
 * one balancer of listen.proxyProtocol; clients connect to HAProxy from other
 * loopback addresses (127.0.0.2 …), so what Portcullis believes is visible.
 */

const pki = new TestPki();
after(() => pki.cleanup());

const v2Signature = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');
/** A v2 PROXY header over TCP/IPv4 naming `source`:`port` as the client. */
function v2Header(source: string, port: number): Buffer {
  const block = Buffer.alloc(12);
  Buffer.from(source.split('.').map(Number)).copy(block, 0);
  Buffer.from([127, 0, 0, 1]).copy(block, 4);
  block.writeUInt16BE(port, 8);
  block.writeUInt16BE(443, 10);
  return Buffer.concat([v2Signature, Buffer.from([0x21, 0x11, 0, 12]), block]);
}
const v2Local = Buffer.concat([v2Signature, Buffer.from([0x20, 0x00, 0, 0])]);

/** Sends raw bytes from `from` to the port; resolves with what came back once the other side closed. */
async function sendRaw(port: number, from: string, bytes: Buffer): Promise<Buffer> {
  const socket = connect({ port, host: '127.0.0.1', localAddress: from });
  socket.on('error', () => {});
  const chunks: Buffer[] = [];
  socket.on('data', (d: Buffer) => chunks.push(d));
  await once(socket, 'connect');
  socket.write(bytes);
  await once(socket, 'close');
  return Buffer.concat(chunks);
}

/** An HTTPS GET (HTTP/1.1) of api.test on a socket that first sent `prefix` (a PROXY header, or nothing), from `from`; resolves with the upstream's echo. */
async function getAfter(port: number, from: string, prefix: Buffer, ca: Ca, path: string): Promise<EchoAnswer> {
  const socket: Socket = connect({ port, host: '127.0.0.1', localAddress: from });
  socket.on('error', () => {});
  await once(socket, 'connect');
  if (prefix.length) socket.write(prefix);
  const secure = tlsConnect({ socket, servername: 'api.test', ca: readFileSync(ca.certFile), ALPNProtocols: ['http/1.1'] });
  const req = httpsRequest({ createConnection: () => secure, host: '127.0.0.1', path, headers: { host: 'api.test' } });
  req.end();
  const [res] = (await once(req, 'response')) as [IncomingMessage];
  const chunks: Buffer[] = [];
  for await (const chunk of res) chunks.push(chunk as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString()) as EchoAnswer;
}

const echoOf = (r: RunResult): EchoAnswer => JSON.parse(/\r\n\r\n(\{.*)$/s.exec(r.stdout)?.[1] ?? 'null') as EchoAnswer;
const requestIdOf = (r: RunResult) => /^x-request-id: (\S+)/im.exec(r.stdout)?.[1];
const statusOf = (r: RunResult) => /^HTTP\/[\d.]+ (\d{3})/m.exec(r.stdout)?.[1] ?? null;

describe('behind HAProxy with the PROXY protocol, the client HAProxy saw is the client everywhere', () => {
  const scope = suiteScope();
  let root: Ca;
  let p: RunningProxy;
  let http: number;
  /** HAProxy frontends: HTTPS with v1 and v2 headers, plain HTTP with v1 and v2. */
  let via: { v1: number; v2: number; httpV1: number; httpV2: number };

  before(async () => {
    root = pki.root('pp-root');
    const leaf = pki.leaf('pp-api', root, { dns: ['api.test', 'inner.test'] });
    const upstream = await startUpstream(scope);
    p = await startProxy(
      scope,
      `
listen: { https: "127.0.0.1:0", http: "127.0.0.1:0", proxyProtocol: ["127.0.0.1"] }
log: { access: access.log }
ipAccess: { deny: ["127.0.0.2"] }
sites:
  - hosts: [api.test]
    certificates: [{ cert: ${leaf.chainFile}, key: ${leaf.keyFile} }]
    routes:
      - { path: /limited/, upstream: "${upstream.origin}", rateLimit: { rps: 0.001, burst: 1 } }
      - { path: /, upstream: "${upstream.origin}" }
  - hosts: [inner.test]
    certificates: [{ cert: ${leaf.chainFile}, key: ${leaf.keyFile} }]
    ipAccess: { allow: ["127.0.0.1"] }
    routes: [{ path: /, upstream: "builtin:whoami" }]
`,
    );
    http = p.proxy.httpAddress!.port;
    const haproxy = await startHaproxy(scope, [
      { target: p.port, send: 'send-proxy' },
      { target: p.port, send: 'send-proxy-v2' },
      { target: http, send: 'send-proxy' },
      { target: http, send: 'send-proxy-v2' },
    ]);
    const [v1, v2, httpV1, httpV2] = haproxy.ports as [number, number, number, number];
    via = { v1, v2, httpV1, httpV2 };
  });

  /** curl to a site through HAProxy's frontend `port`, from the loopback address `from`, headers included in stdout. */
  const through = (port: number, from: string, path: string, extra: string[] = [], host = 'api.test') =>
    curl(['--resolve', `${host}:${port}:127.0.0.1`, '--interface', from, '--cacert', root.certFile, '-D', '-', ...extra, `https://${host}:${port}${path}`]);

  test('X-Forwarded-For, the access log and the connection log name the client, over v1 and v2, HTTP/1.1 and HTTP/2', async () => {
    for (const [header, port] of [['v1', via.v1], ['v2', via.v2]] as const) {
      for (const version of ['--http1.1', '--http2']) {
        const r = await through(port, '127.0.0.3', '/echo', [version]);
        assert.equal(statusOf(r), '200', `${header} ${version}: ${r.stderr}`);
        assert.equal(echoOf(r).headers['x-forwarded-for'], '127.0.0.3', `${header} ${version}: the upstream sees the client, not HAProxy`);
        const id = requestIdOf(r);
        const record = await p.waitForAccess((a) => a.requestId === id);
        assert.equal(record.clientAddress, '127.0.0.3', `${header} ${version}: the access log`);
        assert.equal(record.alpn, version === '--http2' ? 'h2' : 'http/1.1');
      }
    }
    const accepted = p.logs.filter((l) => l.event === 'connection_accepted');
    assert.ok(accepted.length >= 4);
    assert.ok(accepted.every((l) => l.remoteAddress === '127.0.0.3'), 'every accepted connection is logged with the client\'s address');
  });

  test('the global ipAccess refuses 127.0.0.2 behind HAProxy and admits 127.0.0.1; a site\'s ipAccess judges the client too', async () => {
    const denied = await through(via.v1, '127.0.0.2', '/echo');
    assert.notEqual(denied.code, 0, 'no answer for a denied client');
    const refusal = await p.waitForLog((l) => l.reason === 'ip_denied' && l.remoteAddress === '127.0.0.2');
    assert.equal(refusal.list, 'ipAccess');
    const deniedV2 = await through(via.v2, '127.0.0.2', '/echo');
    assert.notEqual(deniedV2.code, 0);

    const admitted = await through(via.v2, '127.0.0.1', '/echo');
    assert.equal(echoOf(admitted).headers['x-forwarded-for'], '127.0.0.1');

    assert.equal(statusOf(await through(via.v1, '127.0.0.1', '/', [], 'inner.test')), '200', 'the site admits its allow-list');
    const outside = await through(via.v1, '127.0.0.3', '/', [], 'inner.test');
    assert.notEqual(outside.code, 0, 'a client outside the site\'s list gets no handshake, although HAProxy is inside it');
    const siteRefusal = await p.waitForLog((l) => l.reason === 'ip_denied' && l.remoteAddress === '127.0.0.3');
    assert.equal(siteRefusal.list, 'sites[1].ipAccess');
  });

  test('rate limits count each client behind the balancer on its own', async () => {
    assert.equal(statusOf(await through(via.v1, '127.0.0.4', '/limited/a')), '200');
    const limited = await through(via.v2, '127.0.0.4', '/limited/b');
    assert.equal(statusOf(limited), '429', 'the same client through either header');
    assert.equal(statusOf(await through(via.v1, '127.0.0.5', '/limited/c')), '200', 'another client behind the same HAProxy has its own bucket');
  });

  test('a PROXY header from a source outside listen.proxyProtocol is refused and not believed; that source without one is served', async () => {
    for (const header of [Buffer.from('PROXY TCP4 198.51.100.9 127.0.0.1 40000 443\r\n'), v2Header('198.51.100.9', 40000)]) {
      const answer = await sendRaw(p.port, '127.0.0.3', header);
      assert.equal(answer.length, 0, 'closed without an answer');
    }
    const refusals = p.logs.filter((l) => l.reason === 'proxy_protocol_untrusted');
    assert.equal(refusals.length, 2);
    assert.ok(refusals.every((l) => l.remoteAddress === '127.0.0.3'), 'reported with the address it came from');
    assert.ok(!p.logs.some((l) => l.remoteAddress === '198.51.100.9'), 'the claimed address appears nowhere');
    const metrics = await p.proxy.metrics.registry.metrics();
    assert.match(metrics, /portcullis_connections_refused_total\{reason="proxy_protocol_untrusted"\} 2/);

    const direct = await getAfter(p.port, '127.0.0.3', Buffer.alloc(0), root, '/echo');
    assert.equal(direct.headers['x-forwarded-for'], '127.0.0.3', 'a direct client without a header is served as itself');
  });

  test('a balancer\'s connection without a header, or with a broken one, is refused; a v2 LOCAL header keeps the balancer\'s address', async () => {
    const direct = await curl(['--resolve', `api.test:${p.port}:127.0.0.1`, '--interface', '127.0.0.1', '--cacert', root.certFile, `https://api.test:${p.port}/echo`]);
    assert.notEqual(direct.code, 0);
    const missing = await p.waitForLog((l) => l.reason === 'proxy_protocol_missing');
    assert.equal(missing.remoteAddress, '127.0.0.1');

    assert.equal((await sendRaw(p.port, '127.0.0.1', Buffer.from('PROXY TCP4 198.51.100.9 127.0.0.1 99999 443\r\n'))).length, 0);
    const malformed = await p.waitForLog((l) => l.reason === 'proxy_protocol_malformed');
    assert.equal(malformed.remoteAddress, '127.0.0.1');
    assert.match(String(malformed.why), /source port "99999" is not a port number/);

    const local = await getAfter(p.port, '127.0.0.1', v2Local, root, '/echo');
    assert.equal(local.headers['x-forwarded-for'], '127.0.0.1', 'LOCAL: the balancer speaks for itself');
  });

  test('the redirect listener: redirects and logs the client behind HAProxy, refuses untrusted headers and headerless balancer connections', async () => {
    for (const port of [via.httpV1, via.httpV2]) {
      const ok = await curl(['--interface', '127.0.0.3', '-o', '/dev/null', '-w', '%{http_code} %{redirect_url}', '-H', 'Host: api.test', `http://127.0.0.1:${port}/x`]);
      assert.equal(ok.stdout, `308 https://api.test:${p.port}/x`);
      const unknown = await curl(['--interface', '127.0.0.4', '-o', '/dev/null', '-w', '%{http_code}', '-H', 'Host: evil.test', `http://127.0.0.1:${port}/`]);
      assert.equal(unknown.stdout, '421');
    }
    const refused = p.logs.filter((l) => l.event === 'redirect_refused' && l.reason === 'unknown_host');
    assert.deepEqual(
      refused.map((l) => l.remoteAddress),
      ['127.0.0.4', '127.0.0.4'],
    );

    assert.equal((await sendRaw(http, '127.0.0.3', Buffer.from('PROXY TCP4 198.51.100.9 127.0.0.1 40000 80\r\nGET / HTTP/1.1\r\nHost: api.test\r\n\r\n'))).length, 0);
    const untrusted = await p.waitForLog((l) => l.event === 'redirect_refused' && l.reason === 'proxy_protocol_untrusted');
    assert.equal(untrusted.remoteAddress, '127.0.0.3');
    const direct = await curl(['--interface', '127.0.0.3', '-o', '/dev/null', '-w', '%{http_code}', '-H', 'Host: api.test', `http://127.0.0.1:${http}/x`]);
    assert.equal(direct.stdout, '308', 'a direct client without a header is redirected as before');

    assert.equal((await sendRaw(http, '127.0.0.1', Buffer.from('GET / HTTP/1.1\r\nHost: api.test\r\n\r\n'))).length, 0);
    const missing = await p.waitForLog((l) => l.event === 'redirect_refused' && l.reason === 'proxy_protocol_missing');
    assert.equal(missing.remoteAddress, '127.0.0.1');
  });
});

test('the detector blocks a client behind the balancer, not the balancer', async (t) => {
  const root = pki.root('pp-detector-root');
  const leaf = pki.leaf('pp-detector', root, { dns: ['api.test'] });
  const p = await startProxy(
    t,
    `
listen: { https: "127.0.0.1:0", proxyProtocol: ["127.0.0.1"] }
log: { access: off }
detector: { threshold: 2, allow: [] }
sites:
  - hosts: [api.test]
    certificates: [{ cert: ${leaf.chainFile}, key: ${leaf.keyFile} }]
    routes: [{ path: /, upstream: "builtin:whoami" }]
`,
  );
  const [port] = (await startHaproxy(t, [{ target: p.port, send: 'send-proxy-v2' }])).ports as [number];
  const get = (from: string, host: string) => curl(['--resolve', `${host}:${port}:127.0.0.1`, '--interface', from, '--cacert', root.certFile, '-o', '/dev/null', '-w', '%{http_code}', `https://${host}:${port}/`]);
  // an unknown server name is a refused handshake: counted against the client
  for (let i = 0; i < 2; i++) assert.notEqual((await get('127.0.0.6', 'nobody.test')).code, 0);
  const block = await p.waitForLog((l) => l.event === 'source_blocked');
  assert.equal(block.address, '127.0.0.6');
  assert.notEqual((await get('127.0.0.6', 'api.test')).code, 0, 'the blocked client is closed at accept, behind HAProxy too');
  await p.waitForLog((l) => l.reason === 'blocked' && l.remoteAddress === '127.0.0.6');
  assert.equal((await get('127.0.0.7', 'api.test')).stdout, '200', 'another client behind the same HAProxy is served');
});

test('a balancer\'s PROXY header is bounded: in size at once, in time by timeouts.handshake', async (t) => {
  const root = pki.root('pp-bounds-root');
  const leaf = pki.leaf('pp-bounds', root, { dns: ['api.test'] });
  const p = await startProxy(
    t,
    `
listen: { https: "127.0.0.1:0", proxyProtocol: ["127.0.0.1"] }
log: { access: off }
timeouts: { handshake: 1s }
sites:
  - hosts: [api.test]
    certificates: [{ cert: ${leaf.chainFile}, key: ${leaf.keyFile} }]
    routes: [{ path: /, upstream: "builtin:whoami" }]
`,
  );
  const timed = async (bytes: Buffer) => {
    const t0 = performance.now();
    const answer = await sendRaw(p.port, '127.0.0.1', bytes);
    assert.equal(answer.length, 0, 'closed without an answer');
    return performance.now() - t0;
  };
  const tooLongV1 = Buffer.from(`PROXY UNKNOWN ${'x'.repeat(200)}`);
  assert.ok((await timed(tooLongV1)) < 900, 'a v1 line past 107 bytes is refused at once');
  assert.match(String((await p.waitForLog((l) => l.reason === 'proxy_protocol_malformed')).why), /without CRLF within 107 bytes/);
  const tooLongV2 = Buffer.concat([v2Signature, Buffer.from([0x21, 0x11, 0x03, 0xe8])]);
  assert.ok((await timed(tooLongV2)) < 900, 'a v2 header announcing more than 512 bytes is refused at once');
  await p.waitForLog((l) => l.reason === 'proxy_protocol_malformed' && /announces 1000 bytes/.test(String(l.why)));

  const stalled = await timed(Buffer.from('PROXY TCP4 192.0.2.1 '));
  assert.ok(stalled >= 900 && stalled < 5_000, `a stalled header is cut at timeouts.handshake (${Math.round(stalled)} ms)`);
  await p.waitForLog((l) => l.reason === 'proxy_protocol_malformed' && /incomplete after 1000 ms: 21 bytes/.test(String(l.why)));
  const silent = await timed(Buffer.alloc(0));
  assert.ok(silent >= 900 && silent < 5_000, `a balancer connection that sends nothing is cut at timeouts.handshake (${Math.round(silent)} ms)`);
  await p.waitForLog((l) => l.reason === 'proxy_protocol_missing' && /no PROXY header within 1000 ms/.test(String(l.why)));
  const metrics = await p.proxy.metrics.registry.metrics();
  assert.match(metrics, /portcullis_connections_refused_total\{reason="proxy_protocol_malformed"\} 3/);
  assert.match(metrics, /portcullis_connections_refused_total\{reason="proxy_protocol_missing"\} 1/);
});
