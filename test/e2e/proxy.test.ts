import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { curl, resolveTo, tlsClient } from '../helpers/clients.js';
import { TestPki, type Ca } from '../helpers/pki.js';
import { startProxy, suiteScope, type RunningProxy } from '../helpers/proxy.js';
import { closedPort, startUpstream, type EchoAnswer, type Upstream } from '../helpers/upstream.js';

const pki = new TestPki();
after(() => pki.cleanup());

interface Reply {
  status: number;
  headers: Record<string, string>;
  body: string;
  version: string;
}

/** One request with curl; `-w` appends status and version after a marker. */
async function request(port: number, host: string, ca: string, path: string, extra: string[] = []): Promise<Reply> {
  const r = await curl([...resolveTo(host, port), '--cacert', ca, '-D', '-', '-w', '\n@@%{http_code} %{http_version}', ...extra, `https://${host}:${port}${path}`]);
  assert.equal(r.code, 0, `curl failed: ${r.stderr}`);
  const [raw, meta] = r.stdout.split('\n@@') as [string, string];
  const split = raw.indexOf('\r\n\r\n');
  const headers: Record<string, string> = {};
  for (const line of raw.slice(0, split).split('\r\n').slice(1)) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
  }
  const [status, version] = meta.split(' ') as [string, string];
  return { status: Number(status), headers, body: raw.slice(split + 4), version };
}

const echo = (r: Reply) => JSON.parse(r.body) as EchoAnswer;

describe('proxying to real upstreams', () => {
  const scope = suiteScope();
  let root: Ca;
  let p: RunningProxy;
  let plain: Upstream;
  let second: Upstream;
  let privateTls: Upstream;
  let mtlsUpstream: Upstream;
  let upstreamRoot: Ca;
  let proxyClient: { certFile: string; keyFile: string };
  let deadPort: number;
  const get = (host: string, path: string, extra: string[] = []) => request(p.port, host, root.certFile, path, extra);

  before(async () => {
    root = pki.root('proxy-root');
    upstreamRoot = pki.root('upstream-private-root');
    const api = pki.leaf('api', root, { dns: ['api.test'] });
    const other = pki.leaf('other', root, { dns: ['other.test'] });
    const upstreamLeaf = pki.leaf('payments-internal', upstreamRoot, { dns: ['payments.internal'] });
    proxyClient = pki.leaf('proxy-to-upstream', upstreamRoot, { eku: 'clientAuth' });
    plain = await startUpstream(scope, { name: 'plain' });
    second = await startUpstream(scope, { name: 'second' });
    privateTls = await startUpstream(scope, { name: 'private', tls: { certFile: upstreamLeaf.chainFile, keyFile: upstreamLeaf.keyFile } });
    mtlsUpstream = await startUpstream(scope, {
      name: 'mtls',
      tls: { certFile: upstreamLeaf.chainFile, keyFile: upstreamLeaf.keyFile, clientCa: upstreamRoot.certFile },
    });
    deadPort = await closedPort();
    p = await startProxy(
      scope,
      `
listen: { https: "127.0.0.1:0" }
timeouts: { upstreamResponse: 1s, upstreamConnect: 2s }
sites:
  - hosts: [api.test]
    certificates: [{ cert: ${api.chainFile}, key: ${api.keyFile} }]
    hsts: { maxAge: 600, includeSubDomains: false }
    routes:
      - { path: /, upstream: ${plain.origin} }
      - { path: /v2/, upstream: ${second.origin} }
      - { path: /admin, upstream: ${second.origin} }
      - { path: /whoami/, upstream: "builtin:whoami" }
      - { path: /rr/, upstream: [${plain.origin}, ${second.origin}] }
      - { path: /half-down/, upstream: ["http://127.0.0.1:${deadPort}", ${second.origin}] }
      - { path: /down/, upstream: "http://127.0.0.1:${deadPort}" }
      - path: /private/
        upstream: ${privateTls.origin}
        upstreamTls: { ca: ${upstreamRoot.certFile}, serverName: payments.internal }
      - path: /untrusted/
        upstream: ${privateTls.origin}
        upstreamTls: { serverName: payments.internal }
      - path: /wrong-name/
        upstream: ${privateTls.origin}
        upstreamTls: { ca: ${upstreamRoot.certFile}, serverName: billing.internal }
      - path: /mtls/
        upstream: ${mtlsUpstream.origin}
        upstreamTls: { ca: ${upstreamRoot.certFile}, serverName: payments.internal, cert: ${proxyClient.certFile}, key: ${proxyClient.keyFile} }
      - path: /mtls-nocert/
        upstream: ${mtlsUpstream.origin}
        upstreamTls: { ca: ${upstreamRoot.certFile}, serverName: payments.internal }
  - hosts: [other.test]
    certificates: [{ cert: ${other.chainFile}, key: ${other.keyFile} }]
    routes: [{ path: /, upstream: "builtin:whoami" }]
`,
    );
  });

  test('serves HTTP/1.1 and HTTP/2 on one port through the same pipeline', async () => {
    const h1 = await get('api.test', '/x', ['--http1.1']);
    const h2 = await get('api.test', '/x', ['--http2']);
    assert.equal(h1.version, '1.1');
    assert.equal(h2.version, '2');
    assert.equal(echo(h1).url, '/x');
    assert.equal(echo(h2).url, '/x');
    assert.equal(echo(h2).headers.host, `api.test:${p.port}`);
  });

  test('sets x-request-id on both sides and the site HSTS policy on the response', async () => {
    const r = await get('api.test', '/id');
    assert.match(r.headers['x-request-id'] ?? '', /^[0-9a-f-]{36}$/);
    assert.equal(echo(r).headers['x-request-id'], r.headers['x-request-id']);
    assert.equal(r.headers['strict-transport-security'], 'max-age=600');
  });

  test('strips hop-by-hop request fields, those named in Connection, and Proxy-Authorization', async () => {
    const r = await get('api.test', '/hop-request', [
      '--http1.1',
      '-H', 'Connection: keep-alive, X-Drop-Me',
      '-H', 'X-Drop-Me: 1',
      '-H', 'Keep-Alive: timeout=5',
      '-H', 'Proxy-Authorization: Basic c2VjcmV0',
      '-H', 'Proxy-Connection: keep-alive',
      '-H', 'TE: trailers',
      '-H', 'Upgrade: h2c',
      '-H', 'X-Kept: yes',
    ]);
    const seen = echo(r).headers;
    for (const name of ['x-drop-me', 'keep-alive', 'proxy-authorization', 'proxy-connection', 'te', 'upgrade']) assert.equal(seen[name], undefined, `${name} reached the upstream`);
    assert.notEqual(seen.connection, 'keep-alive, X-Drop-Me');
    assert.equal(seen['x-kept'], 'yes');
  });

  test('strips hop-by-hop request fields in CGI spelling, fields named in Connection in the other spelling, and Proxy (httpoxy)', async () => {
    // CGI-style upstreams read proxy_authorization as HTTP_PROXY_AUTHORIZATION and Proxy as HTTP_PROXY (CVE-2016-5385)
    const r = await get('api.test', '/hop-request-cgi', [
      '--http1.1',
      '-H', 'Connection: keep-alive, x_drop_me',
      '-H', 'X-Drop-Me: 1',
      '-H', 'proxy_authorization: Basic c2VjcmV0',
      '-H', 'keep_alive: timeout=5',
      '-H', 'proxy_connection: keep-alive',
      '-H', 'Proxy: http://attacker.test:8080',
      '-H', 'X_Kept: yes',
    ]);
    const seen = echo(r).headers;
    for (const name of ['x-drop-me', 'proxy_authorization', 'keep_alive', 'proxy_connection', 'proxy']) assert.equal(seen[name], undefined, `${name} reached the upstream`);
    assert.equal(seen.x_kept, 'yes');
  });

  test('strips hop-by-hop response fields and replaces the upstream HSTS with the site policy', async () => {
    const r = await get('api.test', '/hop', ['--http1.1']);
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-internal'], undefined);
    assert.notEqual(r.headers['keep-alive'], 'timeout=5', 'the upstream Keep-Alive stays hop-by-hop');
    assert.equal(r.headers['x-kept'], 'yes');
    assert.equal(r.headers['strict-transport-security'], 'max-age=600');
  });

  test('replaces spoofed X-Forwarded-* fields from an untrusted client', async () => {
    const r = await get('api.test', '/xff', [
      '-H', 'X-Forwarded-For: 6.6.6.6',
      '-H', 'X-Forwarded-Host: evil.test',
      '-H', 'X-Forwarded-Proto: http',
      '-H', 'Forwarded: for=6.6.6.6',
      '-H', 'X-Real-IP: 6.6.6.6',
      '-H', 'X-Request-Id: chosen-by-client',
      '-H', 'X-Forwarded-Port: 80',
      '-H', 'X-Forwarded-Prefix: /admin',
      '-H', 'X-Original-URL: /admin',
      '-H', 'True-Client-IP: 6.6.6.6',
    ]);
    const seen = echo(r).headers;
    assert.equal(seen['x-forwarded-for'], '127.0.0.1');
    assert.equal(seen['x-forwarded-proto'], 'https');
    assert.equal(seen['x-forwarded-host'], `api.test:${p.port}`);
    assert.equal(seen.forwarded, undefined);
    assert.equal(seen['x-real-ip'], undefined);
    assert.notEqual(seen['x-request-id'], 'chosen-by-client');
    for (const name of ['x-forwarded-port', 'x-forwarded-prefix', 'x-original-url', 'true-client-ip']) assert.equal(seen[name], undefined, name);
  });

  test('routes by the longest matching prefix, on whole path segments for prefixes without a trailing slash', async () => {
    assert.equal(echo(await get('api.test', '/v2/items')).name, 'second');
    assert.equal(echo(await get('api.test', '/v2')).name, 'plain', '/v2 does not match the /v2/ prefix');
    assert.equal(echo(await get('api.test', '/admin')).name, 'second');
    assert.equal(echo(await get('api.test', '/admin/users?x=1')).name, 'second');
    assert.equal(echo(await get('api.test', '/administrator')).name, 'plain');
    const who = JSON.parse((await get('api.test', '/whoami/me')).body) as { route: string; tls: { sni: string } };
    assert.equal(who.route, '/whoami/');
    assert.equal(who.tls.sni, 'api.test');
  });

  test('normalises the path (dot segments, escaped letters, repeated slashes) before routing and forwards the normal form', async () => {
    const r = await get('api.test', '/v2/../admin/x', ['--path-as-is']);
    assert.equal(echo(r).name, 'second');
    assert.equal(echo(r).url, '/admin/x');
    const encoded = await get('api.test', '/v2/%2e%2e/admin/y', ['--path-as-is']);
    assert.equal(echo(encoded).url, '/admin/y');
    for (const disguised of ['/%61dmin/z', '//admin/z', '/x/..//admin/z']) {
      const r = await get('api.test', disguised, ['--path-as-is']);
      assert.equal(echo(r).name, 'second', disguised);
      assert.equal(echo(r).url, '/admin/z', disguised);
    }
  });

  test('refuses encoded slashes, backslashes and /..;/ in the path with 400 ambiguous_path', async () => {
    for (const path of ['/v2%2F..%2Fadmin', '/v2/%5c..%5cadmin', '/v2/..;/admin']) {
      const r = await get('api.test', path, ['--path-as-is']);
      assert.equal(r.status, 400);
      assert.equal((JSON.parse(r.body) as { reason: string }).reason, 'ambiguous_path');
    }
  });

  test('answers 400 to a request with two Host fields', async () => {
    const socket = tlsClient(p.port, 'api.test', root.certFile);
    await once(socket, 'secureConnect');
    socket.write('GET / HTTP/1.1\r\nHost: api.test\r\nHost: other.test\r\nConnection: close\r\n\r\n');
    let text = '';
    socket.on('data', (d: Buffer) => (text += d.toString()));
    await once(socket, 'close');
    assert.match(text, /^HTTP\/1\.1 400 /);
    assert.match(text, /"reason":"bad_request_target"/);
  });

  test('answers 421 when Host names another site than the TLS server name, or no site', async () => {
    for (const [host, reason] of [
      ['other.test', 'sni_host_mismatch'],
      ['unknown.test', 'unknown_host'],
    ]) {
      for (const version of ['--http1.1', '--http2']) {
        const r = await get('api.test', '/', [version, '-H', `Host: ${host}`]);
        assert.equal(r.status, 421, `${host} ${version}`);
        const body = JSON.parse(r.body) as { error: string; reason: string; requestId: string };
        assert.equal(body.reason, reason);
        assert.equal(body.error, 'Misdirected Request');
        assert.equal(body.requestId, r.headers['x-request-id']);
        assert.equal(r.headers['strict-transport-security'], 'max-age=600');
      }
    }
  });

  test('reaches an HTTPS upstream that a private CA signed, with the configured server name', async () => {
    const r = await get('api.test', '/private/x');
    assert.equal(r.status, 200, r.body);
    assert.equal(echo(r).name, 'private');
  });

  test('answers 502 naming the verification error when the upstream certificate is not trusted', async () => {
    const r = await get('api.test', '/untrusted/x');
    assert.equal(r.status, 502);
    const body = JSON.parse(r.body) as { error: string; reason: string; detail: string; requestId: string };
    assert.equal(body.error, 'Bad Gateway');
    assert.equal(body.reason, 'upstream_cert_untrusted');
    assert.equal(body.detail, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
    assert.equal(body.requestId, r.headers['x-request-id']);
    assert.ok(p.logs.some((l) => l.reason === 'upstream_cert_untrusted' && l.requestId === body.requestId));
  });

  test('answers 502 upstream_cert_name_mismatch when the certificate does not carry the server name', async () => {
    const r = await get('api.test', '/wrong-name/x');
    assert.equal(r.status, 502);
    assert.equal((JSON.parse(r.body) as { reason: string }).reason, 'upstream_cert_name_mismatch');
  });

  test('presents the configured client certificate to an upstream that requires one', async () => {
    const ok = await get('api.test', '/mtls/x');
    assert.equal(ok.status, 200);
    assert.equal(echo(ok).clientCertSubject, 'CN=proxy-to-upstream');
    const refused = await get('api.test', '/mtls-nocert/x');
    assert.equal(refused.status, 502);
  });

  test('answers 502 upstream_unreachable as JSON when the upstream refuses connections', async () => {
    const r = await get('api.test', '/down/x');
    assert.equal(r.status, 502);
    assert.equal(r.headers['content-type'], 'application/json');
    const body = JSON.parse(r.body) as { reason: string; detail: string };
    assert.equal(body.reason, 'upstream_unreachable');
    assert.equal(body.detail, 'ECONNREFUSED');
    assert.equal(r.headers['strict-transport-security'], 'max-age=600', 'HSTS on proxy-generated errors too');
    assert.equal(r.headers['x-content-type-options'], 'nosniff');
  });

  test('answers 504 upstream_timeout when the upstream is slower than timeouts.upstreamResponse', async () => {
    const r = await get('api.test', '/slow?ms=3000');
    assert.equal(r.status, 504);
    assert.equal((JSON.parse(r.body) as { reason: string }).reason, 'upstream_timeout');
  });

  test('balances round robin over the upstreams of a route', async () => {
    const names = [];
    for (let i = 0; i < 4; i++) names.push(echo(await get('api.test', '/rr/x')).name);
    assert.deepEqual(names.sort(), ['plain', 'plain', 'second', 'second']);
  });

  test('skips an upstream that refuses connections for a while and still answers every request', async () => {
    const retries = () => p.logs.filter((l) => l.msg === 'upstream failed; trying the next one').length;
    const before = retries();
    for (let i = 0; i < 4; i++) {
      const r = await get('api.test', '/half-down/x');
      assert.equal(r.status, 200);
      assert.equal(echo(r).name, 'second');
    }
    assert.equal(retries() - before, 1, 'only the first request tried the refusing upstream');
  });

  test('answers a request with a non-WebSocket Upgrade header as a plain request', async () => {
    const r = await get('api.test', '/plain-upgrade', ['--http1.1', '-H', 'Connection: Upgrade', '-H', 'Upgrade: h2c']);
    assert.equal(r.status, 200);
    assert.equal(echo(r).url, '/plain-upgrade');
    assert.equal(echo(r).headers.upgrade, undefined);
  });

  test('relays an upstream that refuses a WebSocket upgrade', async () => {
    const r = await get('api.test', '/ws-deny', ['--http1.1', '-H', 'Connection: Upgrade', '-H', 'Upgrade: websocket', '-H', 'Sec-WebSocket-Version: 13', '-H', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==']);
    assert.equal(r.status, 403);
    assert.equal(r.body, 'denied');
    assert.equal(r.headers['strict-transport-security'], 'max-age=600');
  });

  test('passes a WebSocket upgrade through on HTTP/1.1 and relays bytes both ways', async () => {
    const socket = tlsClient(p.port, 'api.test', root.certFile);
    const received: Buffer[] = [];
    const done = new Promise<string>((resolve, reject) => {
      socket.on('data', (d: Buffer) => {
        received.push(d);
        const text = Buffer.concat(received).toString();
        if (text.includes('ping-pong')) resolve(text);
      });
      socket.on('error', reject);
    });
    socket.write(
      `GET /ws HTTP/1.1\r\nHost: api.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\nping-`,
    );
    socket.write('pong');
    const text = await done;
    socket.destroy();
    assert.match(text, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
    assert.match(text, /x-upstream: plain/i);
    assert.match(text, /\r\n\r\nping-pong$/);
  });
});

describe('trusted proxies', () => {
  test('keeps and extends X-Forwarded-* only from a peer listed in trustedProxies', async (t) => {
    const root = pki.root('trusted-root');
    const api = pki.leaf('trusted-api', root, { dns: ['api.test'] });
    const upstream = await startUpstream(t);
    const yaml = (trusted: string) => `
listen: { https: "127.0.0.1:0" }
trustedProxies: [${trusted}]
sites:
  - hosts: [api.test]
    certificates: [{ cert: ${api.chainFile}, key: ${api.keyFile} }]
    routes: [{ path: /, upstream: ${upstream.origin} }]
`;
    const spoof = ['-H', 'X-Forwarded-For: 203.0.113.7', '-H', 'X-Forwarded-Proto: http', '-H', 'X-Forwarded-Host: public.example', '-H', 'Forwarded: for=203.0.113.7', '-H', 'X-Forwarded-Port: 443'];
    const trusting = await startProxy(t, yaml('127.0.0.0/8'));
    const kept = echo(await request(trusting.port, 'api.test', root.certFile, '/', spoof)).headers;
    assert.equal(kept['x-forwarded-for'], '203.0.113.7, 127.0.0.1');
    assert.equal(kept['x-forwarded-proto'], 'http');
    assert.equal(kept['x-forwarded-host'], 'public.example');
    assert.equal(kept.forwarded, 'for=203.0.113.7');
    assert.equal(kept['x-forwarded-port'], '443');

    const other = await startProxy(t, yaml('10.0.0.0/8, "fd00::/8"'));
    const replaced = echo(await request(other.port, 'api.test', root.certFile, '/', spoof)).headers;
    assert.equal(replaced['x-forwarded-for'], '127.0.0.1');
    assert.equal(replaced['x-forwarded-proto'], 'https');
    assert.equal(replaced.forwarded, undefined);
    assert.equal(replaced['x-forwarded-port'], undefined);
  });
});
