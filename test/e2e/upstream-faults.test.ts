import assert from 'node:assert/strict';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { curl, resolveTo } from '../helpers/clients.js';
import { TestPki, type Ca } from '../helpers/pki.js';
import { startProxy, suiteScope, tempDir, type RunningProxy, type Scope } from '../helpers/proxy.js';
import { startUpstream } from '../helpers/upstream.js';

const pki = new TestPki();
after(() => pki.cleanup());

/** A raw TCP upstream: `behave` gets each connection once its request head has arrived. */
async function rawUpstream(scope: Scope, behave: (socket: Socket) => void): Promise<string> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.once('close', () => sockets.delete(socket));
    let head = '';
    const onData = (d: Buffer) => {
      head += d.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      socket.off('data', onData);
      behave(socket);
    };
    socket.on('data', onData);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  scope.after(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('upstreams that fail: every failure is answered with its reason and no other client notices', () => {
  const scope = suiteScope();
  let root: Ca;
  let p: RunningProxy;

  const get = (path: string, version: '--http1.1' | '--http2' = '--http1.1') =>
    curl([...resolveTo('api.test', p.port), '--cacert', root.certFile, version, '-w', '\n%{http_code}', `https://api.test:${p.port}${path}`]);
  const answer = (r: { stdout: string }) => {
    const cut = r.stdout.lastIndexOf('\n');
    return { status: r.stdout.slice(cut + 1), body: r.stdout.slice(0, cut) };
  };
  const accessLine = (path: string) => p.waitForAccess((l) => l.path === path);
  const othersServed = async () => assert.equal(answer(await get('/ok/')).status, '200');

  before(async () => {
    root = pki.root('faults-root');
    const leaf = pki.leaf('api', root, { dns: ['api.test'] });
    const good = await startUpstream(scope);
    const garbage = await rawUpstream(scope, (s) => s.end('garbage\r\n\r\n'));
    const badStatus = await rawUpstream(scope, (s) => s.end('HTTP/1.1 abc Nope\r\n\r\n'));
    const shortBody = await rawUpstream(scope, (s) => s.end('HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nonly this'));
    const reset = await rawUpstream(scope, (s) => {
      s.write('HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n');
      s.write(Buffer.alloc(5000, 0x61), () => s.resetAndDestroy());
    });
    const hanging = await rawUpstream(scope, () => {});
    const dir = tempDir(scope);
    const accessLog = join(dir, 'access.log');
    p = await startProxy(
      scope,
      `
listen: { https: "127.0.0.1:0" }
timeouts: { upstreamResponse: 1s }
log: { access: ${accessLog} }
sites:
  - hosts: [api.test]
    certificates: [{ cert: ${leaf.chainFile}, key: ${leaf.keyFile} }]
    routes:
      - { path: /ok/, upstream: "${good.origin}" }
      - { path: /garbage/, upstream: "${garbage}" }
      - { path: /bad-status/, upstream: "${badStatus}" }
      - { path: /short-body/, upstream: "${shortBody}" }
      - { path: /reset/, upstream: "${reset}" }
      - { path: /hanging/, upstream: "${hanging}" }
`,
      dir,
    );
  });

  for (const [path, detail] of [
    ['/garbage/', 'HTTPParserError: Expected HTTP/, RTSP/ or ICE/'],
    ['/bad-status/', 'HTTPParserError: Invalid status code'],
  ] as const) {
    test(`an upstream answering what is not HTTP (${path}) gets 502 upstream_bad_response naming the parser's complaint`, async () => {
      const r = answer(await get(path));
      assert.equal(r.status, '502');
      assert.deepEqual(JSON.parse(r.body), { ...(JSON.parse(r.body) as object), reason: 'upstream_bad_response', detail });
      assert.equal((await accessLine(path)).reason, 'upstream_bad_response');
      await othersServed();
    });
  }

  test('an upstream that closes before its body is whole cuts the response, and is logged as upstream_unreachable', async () => {
    for (const version of ['--http1.1', '--http2'] as const) {
      const r = await get(`/short-body/${version}`, version);
      // curl: 18 = transfer closed with data outstanding (HTTP/1.1); 92 = stream reset (HTTP/2)
      assert.equal(r.code, version === '--http1.1' ? 18 : 92, r.stderr);
      const line = await accessLine(`/short-body/${version}`);
      // the upstream closed its connection before the body was whole: it dropped the connection
      assert.deepEqual([line.status, line.completed, line.reason, line.httpVersion], [200, false, 'upstream_unreachable', version === '--http1.1' ? '1.1' : '2.0']);
    }
    await othersServed();
  });

  test('an upstream that resets in the middle of a response cuts it, and the reset is logged', async () => {
    const r = await get('/reset/');
    assert.equal(r.code, 18, r.stderr);
    const line = await accessLine('/reset/');
    assert.deepEqual([line.status, line.completed, line.reason], [200, false, 'upstream_unreachable']);
    await othersServed();
  });

  test('an upstream that never answers gets 504 upstream_timeout at timeouts.upstreamResponse', async () => {
    const r = answer(await get('/hanging/'));
    assert.equal(r.status, '504');
    assert.equal((JSON.parse(r.body) as { reason: string }).reason, 'upstream_timeout');
    await othersServed();
  });
});
