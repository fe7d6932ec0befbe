import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { h2Client, tlsClient } from '../helpers/clients.js';
import { after, before, describe, test } from 'node:test';
import { TestPki, type Ca } from '../helpers/pki.js';
import { startProxy, suiteScope, type RunningProxy } from '../helpers/proxy.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const pki = new TestPki();
after(() => pki.cleanup());

describe('every client-held resource is bounded', () => {
  const scope = suiteScope();
  let root: Ca;
  let p: RunningProxy;
  let upstream: Upstream;
  let upstreamConnections = 0;

  const session = (t: { after(fn: () => unknown): void }) => h2Client(t, p.port, 'api.test', root.certFile);

  before(async () => {
    root = pki.root('bounds-root');
    const leaf = pki.leaf('api', root, { dns: ['api.test'] });
    upstream = await startUpstream(scope);
    upstream.server.on('connection', () => upstreamConnections++);
    p = await startProxy(
      scope,
      `
listen: { https: "127.0.0.1:0" }
timeouts: { request: 1s, send: 1s, idle: 1s, upstreamIdle: 1s }
limits: { maxConcurrentStreams: 8, maxUpstreamConnections: 2 }
sites:
  - hosts: [api.test]
    certificates: [{ cert: ${leaf.chainFile}, key: ${leaf.keyFile} }]
    routes: [{ path: /, upstream: "${upstream.origin}" }]
`,
    );
  });

  test('advertises limits.maxConcurrentStreams to HTTP/2 clients', async (t) => {
    const s = session(t);
    await once(s, 'remoteSettings');
    assert.equal(s.remoteSettings.maxConcurrentStreams, 8);
  });

  test('answers 408 to an HTTP/2 request body that does not end within timeouts.request', async (t) => {
    const s = session(t);
    const req = s.request({ ':method': 'POST', ':path': '/slow-body' });
    req.write('partial');
    const [headers] = (await once(req, 'response')) as [Record<string, string | number>];
    assert.equal(headers[':status'], 408);
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    await once(req, 'close');
    assert.equal((JSON.parse(body) as { reason: string }).reason, 'request_timeout');
  });

  test('disconnects an HTTP/2 client that stops reading a response and aborts the upstream request', async (t) => {
    const upstreamClosed = new Promise<void>((resolve) => upstream.server.once('request', (_q: IncomingMessage, r: ServerResponse) => r.once('close', () => resolve())));
    const s = session(t);
    const req = s.request({ ':path': '/download?bytes=209715200' });
    await once(req, 'response');
    req.pause();
    await upstreamClosed;
    await once(req, 'close');
    assert.equal(req.readableEnded, false, 'the response was cut, not completed');
    assert.ok(p.logs.some((l) => l.reason === 'send_timeout'));
  });

  test('disconnects an HTTP/1.1 client that stops reading a response and aborts the upstream request', async () => {
    const upstreamClosed = new Promise<void>((resolve) => upstream.server.once('request', (_q: IncomingMessage, r: ServerResponse) => r.once('close', () => resolve())));
    const socket = tlsClient(p.port, 'api.test', root.certFile);
    await once(socket, 'secureConnect');
    socket.write('GET /download?bytes=209715200 HTTP/1.1\r\nHost: api.test\r\n\r\n');
    await once(socket, 'data');
    socket.pause();
    await upstreamClosed;
    // a paused socket does not notice the close; reading again does
    socket.resume();
    await once(socket, 'close');
  });

  test('opens at most limits.maxUpstreamConnections connections to one upstream', async (t) => {
    const before = upstreamConnections;
    const s = session(t);
    const answers = await Promise.all(
      Array.from({ length: 6 }, async () => {
        const req = s.request({ ':path': '/slow?ms=200' });
        const [headers] = (await once(req, 'response')) as [Record<string, number>];
        req.resume();
        return headers[':status'];
      }),
    );
    assert.deepEqual(answers, [200, 200, 200, 200, 200, 200]);
    assert.ok(upstreamConnections - before <= 2, `${upstreamConnections - before} upstream connections`);
  });

  test('closes an idle HTTP/2 session after timeouts.idle', async (t) => {
    const s = session(t);
    await once(s, 'remoteSettings');
    await once(s, 'close');
  });

  test('closes a WebSocket tunnel silent for timeouts.upstreamIdle', async () => {
    const socket = tlsClient(p.port, 'api.test', root.certFile);
    await once(socket, 'secureConnect');
    socket.write('GET /ws HTTP/1.1\r\nHost: api.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
    const [first] = (await once(socket, 'data')) as [Buffer];
    assert.match(first.toString(), /^HTTP\/1\.1 101 /);
    await once(socket, 'close');
  });
});
