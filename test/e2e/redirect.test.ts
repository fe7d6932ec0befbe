import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { curl } from '../helpers/clients.js';
import { TestPki } from '../helpers/pki.js';
import { startProxy, suiteScope, type RunningProxy } from '../helpers/proxy.js';

const pki = new TestPki();
after(() => pki.cleanup());

/** Sends a raw request to the plain-HTTP port and returns status and headers of the answer. */
async function raw(port: number, request: string): Promise<{ status: number; headers: Record<string, string>; text: string }> {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => {});
  const chunks: Buffer[] = [];
  socket.on('data', (d: Buffer) => chunks.push(d));
  socket.write(request);
  await once(socket, 'close');
  const text = Buffer.concat(chunks).toString('latin1');
  const [head] = text.split('\r\n\r\n') as [string];
  const headers: Record<string, string> = {};
  for (const line of head.split('\r\n').slice(1)) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0), headers, text };
}

const get = (target: string, host: string | null, extra = '') =>
  `GET ${target} HTTP/1.1\r\n${host === null ? '' : `Host: ${host}\r\n`}${extra}Connection: close\r\n\r\n`;

describe('the plain-HTTP listener redirects configured hosts only', () => {
  const scope = suiteScope();
  let p: RunningProxy;
  let http: number;

  before(async () => {
    const root = pki.root('redirect-root');
    const leaf = pki.leaf('api', root, { dns: ['api.test', '*.api.test'] });
    p = await startProxy(
      scope,
      `
listen: { https: "127.0.0.1:0", http: "127.0.0.1:0" }
sites:
  - hosts: [api.test, "*.api.test"]
    certificates: [{ cert: ${leaf.chainFile}, key: ${leaf.keyFile} }]
    routes: [{ path: /, upstream: "builtin:whoami" }]
`,
    );
    http = p.proxy.httpAddress!.port;
  });

  test('answers 308 to the same path and query on HTTPS for a configured host, case and port ignored', async () => {
    for (const [host, target, location] of [
      ['api.test', '/a/b?x=1&y=%2F', `https://api.test:${p.port}/a/b?x=1&y=%2F`],
      ['API.Test:80', '/', `https://api.test:${p.port}/`],
      ['api.test.', '/p', `https://api.test:${p.port}/p`],
      ['v2.api.test', '/p', `https://v2.api.test:${p.port}/p`],
    ]) {
      const r = await raw(http, get(target!, host!));
      assert.equal(r.status, 308, `${host} ${target}`);
      assert.equal(r.headers.location, location);
      assert.equal(r.headers['strict-transport-security'], undefined, 'HSTS means nothing over plain HTTP');
    }
  });

  test('keeps the method: a POST is redirected with 308, never proxied', async () => {
    const r = await raw(http, `POST /submit HTTP/1.1\r\nHost: api.test\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc`);
    assert.equal(r.status, 308);
    assert.equal(r.headers.location, `https://api.test:${p.port}/submit`);
  });

  test('curl follows the redirect to the HTTPS site', async () => {
    const r = await curl(['-o', '/dev/null', '-w', '%{http_code} %{redirect_url}', '-H', 'Host: api.test', `http://127.0.0.1:${http}/x`]);
    assert.equal(r.stdout, `308 https://api.test:${p.port}/x`);
  });

  const attempts: [string, string, number][] = [
    ['an unknown Host', get('/', 'evil.test'), 421],
    ['a Host that ends like a configured one', get('/', 'api.test.evil.test'), 421],
    ['a Host that is a suffix of a configured one', get('/', 'test'), 421],
    ['an IP literal that is not configured', get('/', '10.0.0.1'), 421],
    ['an IPv6 literal that is not configured', get('/', '[::1]:80'), 421],
    ['userinfo in the Host', get('/', 'api.test@evil.test'), 400],
    ['userinfo with a port in the Host', get('/', 'evil.test:80@api.test'), 400],
    ['a malformed port', get('/', 'api.test:80x'), 400],
    ['a protocol-relative target', get('//evil.test/', 'api.test'), 400],
    ['a protocol-relative target with a backslash', get('/\\evil.test/', 'api.test'), 400],
    ['a backslash in the path', get('/a\\b', 'api.test'), 400],
    ['an absolute-form target for another host', get('http://evil.test/', 'api.test'), 421],
    ['an absolute-form target with userinfo', get('http://api.test@evil.test/', 'api.test'), 400],
    ['a target that is not a path', get('evil.test', 'api.test'), 400],
    ['no Host at all', get('/', null), 400],
    ['two Host fields', get('/', 'api.test', 'Host: evil.test\r\n'), 400],
    ['a CR/LF smuggled into the Host', 'GET / HTTP/1.1\r\nHost: api.test\rLocation: https://evil.test\r\nConnection: close\r\n\r\n', 400],
    ['a Host with a space', get('/', 'api.test evil.test'), 400],
  ];
  for (const [name, request, status] of attempts) {
    test(`refuses ${name} with ${status} and no Location`, async () => {
      const r = await raw(http, request);
      assert.equal(r.status, status);
      assert.equal(r.headers.location, undefined);
      assert.doesNotMatch(r.text, /evil\.test/);
    });
  }

  test('redirects an absolute-form target for a configured host to that host', async () => {
    const r = await raw(http, get('http://api.test/p?q=1', 'other.example'));
    assert.equal(r.status, 308);
    assert.equal(r.headers.location, `https://api.test:${p.port}/p?q=1`);
  });

  test('answers ACME http-01 paths itself (404 for unknown tokens) instead of redirecting them', async () => {
    const r = await raw(http, get('/.well-known/acme-challenge/abc_DEF-123', 'api.test'));
    assert.equal(r.status, 404);
    assert.equal(r.headers.location, undefined);
  });
});
