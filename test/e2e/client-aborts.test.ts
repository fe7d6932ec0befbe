import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { constants as h2 } from 'node:http2';
import type { Duplex } from 'node:stream';
import { readFileSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { connect, type TLSSocket } from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { curl, h2Client, resolveTo } from '../helpers/clients.js';
import { TestPki, type Ca } from '../helpers/pki.js';
import { startProxy, suiteScope, type RunningProxy } from '../helpers/proxy.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const pki = new TestPki();
after(() => pki.cleanup());

describe('clients that vanish do not hurt the proxy or leak upstream requests', () => {
  const scope = suiteScope();
  let root: Ca;
  let p: RunningProxy;
  let upstream: Upstream;
  /** A TLS client over a TCP socket we keep, so the test can end it with a TCP reset. */
  const open = (): { socket: TLSSocket; tcp: Socket } => {
    const tcp = netConnect(p.port, '127.0.0.1');
    const socket = connect({ socket: tcp, servername: 'api.test', ca: readFileSync(root.certFile), ALPNProtocols: ['http/1.1'] });
    socket.on('error', () => {});
    return { socket, tcp };
  };
  const stillServes = async () => {
    const r = await curl([...resolveTo('api.test', p.port), '--cacert', root.certFile, '-o', '/dev/null', '-w', '%{http_code}', `https://api.test:${p.port}/ok`]);
    assert.equal(r.stdout, '200');
  };

  before(async () => {
    root = pki.root('aborts-root');
    const leaf = pki.leaf('api', root, { dns: ['api.test'] });
    upstream = await startUpstream(scope);
    p = await startProxy(
      scope,
      `
listen: { https: "127.0.0.1:0" }
sites:
  - hosts: [api.test]
    certificates: [{ cert: ${leaf.chainFile}, key: ${leaf.keyFile} }]
    routes: [{ path: /, upstream: "${upstream.origin}" }]
`,
    );
  });

  test('a client reset in the middle of a large download aborts the upstream request', async () => {
    const upstreamClosed = new Promise<void>((resolve) =>
      upstream.server.once('request', (_req, res) => res.once('close', () => resolve())),
    );
    const { socket, tcp } = open();
    await once(socket, 'secureConnect');
    socket.write('GET /download?bytes=104857600 HTTP/1.1\r\nHost: api.test\r\n\r\n');
    await once(socket, 'data');
    tcp.resetAndDestroy();
    await upstreamClosed;
    await stillServes();
  });

  test('an HTTP/2 client that cancels a download aborts the upstream request', async (t) => {
    const upstreamClosed = new Promise<void>((resolve) =>
      upstream.server.once('request', (_req: IncomingMessage, res: ServerResponse) => res.once('close', () => resolve())),
    );
    const session = h2Client(t, p.port, 'api.test', root.certFile);
    const req = session.request({ ':path': '/download?bytes=104857600' });
    await once(req, 'response');
    req.close(h2.NGHTTP2_CANCEL);
    await upstreamClosed;
    await stillServes();
  });

  test('a client reset in the middle of an upload aborts the upstream request', async () => {
    let client: ReturnType<typeof open> | undefined;
    const [[upstreamReq]] = await Promise.all([
      once(upstream.server, 'request') as Promise<[IncomingMessage]>,
      (async () => {
        const { socket } = (client = open());
        await once(socket, 'secureConnect');
        socket.write('POST /sink?rate=1000000 HTTP/1.1\r\nHost: api.test\r\nContent-Length: 10485760\r\n\r\n');
        socket.write(Buffer.alloc(256 * 1024));
      })(),
    ]);
    // the upstream sees its request end early ('aborted' error, then 'close')
    upstreamReq.on('error', () => {});
    const upstreamClosed = new Promise((resolve) => upstreamReq.once('close', resolve));
    client!.tcp.resetAndDestroy();
    await upstreamClosed;
    await stillServes();
  });

  test('a client reset while a WebSocket upgrade waits for the upstream closes the upstream connection', async () => {
    const upgradeSeen = new Promise<Duplex>((resolve) => upstream.server.once('upgrade', (_req: IncomingMessage, upstreamSide: Duplex) => resolve(upstreamSide)));
    const { socket, tcp } = open();
    await once(socket, 'secureConnect');
    socket.write('GET /ws-hang HTTP/1.1\r\nHost: api.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
    const upstreamSide = await upgradeSeen;
    const upstreamEnded = once(upstreamSide, 'end');
    tcp.resetAndDestroy();
    await upstreamEnded;
    await stillServes();
  });
});
