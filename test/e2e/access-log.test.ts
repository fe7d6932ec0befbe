import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { curl, resolveTo } from '../helpers/clients.js';
import { TestPki } from '../helpers/pki.js';
import { startProxy, tempDir } from '../helpers/proxy.js';
import { startUpstream } from '../helpers/upstream.js';

const pki = new TestPki();
after(() => pki.cleanup());

test('writes one JSON line per request with the request, the upstream and the TLS connection', async (t) => {
  const root = pki.root('access-root');
  const leaf = pki.leaf('api', root, { dns: ['api.test'] });
  const upstream = await startUpstream(t);
  const dir = tempDir(t);
  const logFile = join(dir, 'logs', 'access.log');
  const body = join(dir, 'body.bin');
  writeFileSync(body, Buffer.alloc(5000, 1));
  const p = await startProxy(
    t,
    `
listen: { https: "127.0.0.1:0" }
log: { access: logs/access.log }
sites:
  - hosts: [api.test]
    certificates: [{ cert: ${leaf.chainFile}, key: ${leaf.keyFile} }]
    routes:
      - { path: /, upstream: "${upstream.origin}" }
      - { path: /down/, upstream: "http://127.0.0.1:9" }
`,
    dir,
  );
  const bodies: number[] = [];
  const call = async (path: string, extra: string[] = []) => {
    const r = await curl([...resolveTo('api.test', p.port), '--cacert', root.certFile, '-D', '-', ...extra, `https://api.test:${p.port}${path}`]);
    const answer = /\r\n\r\n(\{.*)$/s.exec(r.stdout)?.[1];
    if (answer?.includes('"bodyBytes"')) bodies.push((JSON.parse(answer) as { bodyBytes: number }).bodyBytes);
    return /x-request-id: (\S+)/i.exec(r.stdout)?.[1];
  };
  const ids = {
    post: await call('/echo?x=1', ['--http1.1', '--data-binary', `@${body}`]),
    postH2: await call('/echo?x=2', ['--http2', '--data-binary', `@${body}`]),
    h2: await call('/download?bytes=12345', ['--http2', '-o', '/dev/null']),
    down: await call('/down/x'),
    misdirected: await call('/', ['-H', 'Host: other.test']),
  };
  await p.proxy.close();
  await p.flushAccessLog();
  const lines = readFileSync(logFile, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.equal(lines.length, 5, 'one line per request');
  assert.deepEqual(bodies, [5000, 5000], 'the upstream received every body byte with the access log on');
  const byId = (id: string | undefined) => lines.find((l) => l.requestId === id);

  const post = byId(ids.post);
  assert.ok(post, 'the POST has a line');
  assert.equal(post.log, 'access');
  assert.match(String(post.time), /^\d{4}-\d\d-\d\dT/);
  assert.equal(post.site, 'api.test');
  assert.equal(post.route, '/');
  assert.equal(post.method, 'POST');
  assert.equal(post.path, '/echo?x=1');
  assert.equal(post.status, 200);
  assert.equal(post.bytesIn, 5000);
  assert.ok((post.bytesOut as number) > 0);
  assert.equal(post.upstream, upstream.origin);
  assert.equal(typeof post.durationMs, 'number');
  assert.equal(typeof post.upstreamMs, 'number');
  assert.ok((post.upstreamMs as number) <= (post.durationMs as number));
  assert.equal(post.tlsVersion, 'TLSv1.3');
  assert.equal(post.cipher, 'TLS_AES_128_GCM_SHA256');
  assert.equal(post.alpn, 'http/1.1');
  assert.equal(post.sni, 'api.test');
  assert.equal(post.resumed, false);
  // curl's ClientHello: TLS 1.3, SNI, ALPN http/1.1 (the rest depends on its build)
  assert.match(String(post.ja4), /^t13d\d{4}h1_[0-9a-f]{12}_[0-9a-f]{12}$/);
  assert.equal(post.clientAddress, '127.0.0.1');

  assert.equal(byId(ids.postH2)?.bytesIn, 5000);
  const h2 = byId(ids.h2);
  assert.equal(h2?.httpVersion, '2.0');
  assert.equal(h2?.alpn, 'h2');
  assert.equal(h2?.bytesOut, 12345);

  const down = byId(ids.down);
  assert.equal(down?.status, 502);
  assert.equal(down?.reason, 'upstream_unreachable');

  const misdirected = byId(ids.misdirected);
  assert.equal(misdirected?.status, 421);
  assert.equal(misdirected?.reason, 'unknown_host');
  assert.equal(misdirected?.upstream, null);
});
