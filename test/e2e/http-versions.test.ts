import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { tlsClient } from '../helpers/clients.js';
import { TestPki, type Ca } from '../helpers/pki.js';
import { startProxy, suiteScope, type RunningProxy } from '../helpers/proxy.js';

/**
 * Regression for a crash found by scripts/fuzz.ts: Node's HTTP/1 parser takes
 * "HTTP/0.9" and "HTTP/2.0" request lines, and the request handler, which
 * tells HTTP/2 from HTTP/1.1 by the version number, read them as HTTP/2
 * streams and threw an uncaught TypeError: one request took the whole proxy
 * down. They are refused now, as the parser refuses other versions.
 */

const pki = new TestPki();
after(() => pki.cleanup());

/** Sends `text` on a fresh verified HTTP/1.1 connection and reads everything until the proxy closes it (or 5 s pass). */
async function exchange(port: number, caFile: string, text: string): Promise<string> {
  const socket = tlsClient(port, 'api.test', caFile);
  await once(socket, 'secureConnect');
  let answer = '';
  socket.on('data', (d: Buffer) => (answer += d.toString('latin1')));
  const timer = setTimeout(() => socket.destroy(), 5000);
  socket.write(text);
  await once(socket, 'close');
  clearTimeout(timer);
  return answer;
}

describe('HTTP/1 request lines that name another HTTP version', () => {
  const scope = suiteScope();
  let root: Ca;
  let p: RunningProxy;

  before(async () => {
    root = pki.root('http-versions-root');
    const leaf = pki.leaf('api', root, { dns: ['api.test'] });
    p = await startProxy(
      scope,
      `
listen: { https: "127.0.0.1:0" }
sites:
  - hosts: [api.test]
    certificates: [{ cert: ${leaf.chainFile}, key: ${leaf.keyFile} }]
    routes: [{ path: /, upstream: "builtin:whoami" }]
`,
    );
  });

  const requests: [string, string][] = [
    ['an HTTP/0.9 request', 'GET / HTTP/0.9\r\nHost: api.test\r\n\r\n'],
    ['an HTTP/2.0 request', 'GET / HTTP/2.0\r\nHost: api.test\r\n\r\n'],
    ['an HTTP/0.9 WebSocket upgrade', 'GET / HTTP/0.9\r\nHost: api.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n'],
    ['an HTTP/2.0 request asking for h2c', 'GET / HTTP/2.0\r\nHost: api.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n'],
  ];
  for (const [name, request] of requests) {
    test(`${name} is answered 400 malformed_request and the proxy keeps serving`, async () => {
      const answer = await exchange(p.port, root.certFile, request);
      assert.match(answer, /^HTTP\/1\.1 400 Bad Request\r\n/);
      assert.match(answer, /"reason":"malformed_request"/);
      const ok = await exchange(p.port, root.certFile, 'GET /after HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n');
      assert.match(ok, /^HTTP\/1\.1 200 OK\r\n/);
    });
  }

  test('HTTP/1.0 is still served', async () => {
    assert.match(await exchange(p.port, root.certFile, 'GET / HTTP/1.0\r\nHost: api.test\r\n\r\n'), /^HTTP\/1\.1 200 OK\r\n/);
  });
});
