import assert from 'node:assert/strict';
import { connect as tcpConnect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { once } from 'node:events';
import { curl, resolveTo, tlsClient } from '../helpers/clients.js';
import { TestPki, type Ca } from '../helpers/pki.js';
import { startProxy, suiteScope, type RunningProxy } from '../helpers/proxy.js';

const pki = new TestPki();
after(() => pki.cleanup());

/** Sends raw bytes on a TCP or TLS socket and collects everything until the server closes it. */
async function exchange(socket: ReturnType<typeof tcpConnect>, data: string | Buffer | null): Promise<string> {
  const chunks: Buffer[] = [];
  socket.on('data', (d: Buffer) => chunks.push(d));
  socket.on('error', () => {});
  if (data !== null) socket.write(data);
  await once(socket, 'close');
  return Buffer.concat(chunks).toString('latin1');
}

describe('limits and timeouts', () => {
  const scope = suiteScope();
  let p: RunningProxy;
  let root: Ca;
  const tls = () => tlsClient(p.port, 'api.test', root.certFile);

  before(async () => {
    root = pki.root('limits-root');
    const leaf = pki.leaf('api', root, { dns: ['api.test'] });
    p = await startProxy(
      scope,
      `
listen: { https: "127.0.0.1:0" }
timeouts: { handshake: 1s, headers: 1s }
limits: { maxHeaderBytes: 4096 }
sites:
  - hosts: [api.test]
    certificates: [{ cert: ${leaf.chainFile}, key: ${leaf.keyFile} }]
    routes: [{ path: /, upstream: "builtin:whoami" }]
`,
    );
  });

  test('answers plain HTTP on the TLS port with a short 400, closes, counts and logs the source', async () => {
    const text = await exchange(tcpConnect(p.port, '127.0.0.1'), 'GET /secret?x=<script> HTTP/1.1\r\nHost: api.test\r\n\r\n');
    assert.match(text, /^HTTP\/1\.1 400 Bad Request\r\n/);
    assert.match(text, /HTTPS only/);
    assert.doesNotMatch(text, /secret|script|Location/i);
    assert.ok(p.logs.some((l) => l.reason === 'plaintext_http' && l.remoteAddress === '127.0.0.1'));
    const counted = await p.proxy.metrics.refusedConnections.get();
    assert.equal(counted.values.find((v) => v.labels.reason === 'plaintext_http')?.value, 1);
  });

  test('drops a connection whose first bytes are not TLS and logs malformed_client_hello', async () => {
    const text = await exchange(tcpConnect(p.port, '127.0.0.1'), Buffer.from([0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09]));
    assert.equal(text, '');
    assert.ok(p.logs.some((l) => l.reason === 'malformed_client_hello'));
  });

  test('closes a connection that sends no ClientHello within timeouts.handshake', async () => {
    const text = await exchange(tcpConnect(p.port, '127.0.0.1'), null);
    assert.equal(text, '');
    assert.ok(p.logs.some((l) => l.reason === 'handshake_timeout'));
  });

  test('answers 408 and closes when request headers do not finish within timeouts.headers', async () => {
    const socket = tls();
    await once(socket, 'secureConnect');
    const text = await exchange(socket, 'GET / HTTP/1.1\r\nHost: api.test\r\nX-Slow: ');
    assert.match(text, /^HTTP\/1\.1 408 Request Timeout/);
    assert.match(text, /\r\nstrict-transport-security: max-age=31536000; includeSubDomains\r\n/i);
    assert.match(text, /\r\nx-request-id: [0-9a-f-]{36}\r\n/);
    assert.match(text, /"reason":"request_timeout"/);
  });

  test('closes a TLS connection that never sends a request', async () => {
    const socket = tls();
    await once(socket, 'secureConnect');
    const text = await exchange(socket, null);
    assert.doesNotMatch(text, /200 OK/);
  });

  test('answers 431 to HTTP/1.1 headers larger than limits.maxHeaderBytes', async () => {
    const r = await curl([...resolveTo('api.test', p.port), '--cacert', root.certFile, '--http1.1', '-o', '/dev/null', '-w', '%{http_code}', '-H', `X-Big: ${'a'.repeat(8000)}`, `https://api.test:${p.port}/`]);
    assert.equal(r.stdout, '431', JSON.stringify(r));
  });

  test('answers 431 headers_too_large to HTTP/2 header lists larger than limits.maxHeaderBytes', async () => {
    const r = await curl([...resolveTo('api.test', p.port), '--cacert', root.certFile, '--http2', '-H', `X-Big: ${'a'.repeat(8000)}`, `https://api.test:${p.port}/`]);
    assert.equal((JSON.parse(r.stdout) as { reason: string }).reason, 'headers_too_large');
    const small = await curl([...resolveTo('api.test', p.port), '--cacert', root.certFile, '--http2', '-o', '/dev/null', '-w', '%{http_code}', '-H', `X-Small: ${'a'.repeat(1000)}`, `https://api.test:${p.port}/`]);
    assert.equal(small.stdout, '200');
  });
});
