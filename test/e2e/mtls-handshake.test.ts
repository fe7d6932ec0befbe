import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { curl, resolveTo, sClient, sClientRequest } from '../helpers/clients.js';
import { TestPki, type Ca, type Leaf } from '../helpers/pki.js';
import { startProxy, suiteScope, type RunningProxy } from '../helpers/proxy.js';
import { startUpstream } from '../helpers/upstream.js';

const pki = new TestPki();
after(() => pki.cleanup());

describe('clientAuth.refuseAt: handshake, as scanners see mutual TLS', () => {
  const scope = suiteScope();
  let p: RunningProxy;
  let root: Ca;
  let good: Leaf;
  let foreign: Leaf;
  let serverOnly: Leaf;

  before(async () => {
    root = pki.root('refuse-handshake-root');
    const clients = pki.intermediate('refuse-handshake-clients', root);
    const server = pki.leaf('refuse-handshake-server', root, { dns: ['api.test', 'http.test'], ips: ['127.0.0.1'] });
    good = pki.leaf('refuse-handshake-good', clients, { eku: 'clientAuth', subject: '/CN=good-client' });
    foreign = pki.leaf('refuse-handshake-foreign', pki.root('refuse-handshake-foreign-root'), { eku: 'clientAuth', subject: '/CN=foreign-client' });
    serverOnly = pki.leaf('refuse-handshake-server-only', clients, { eku: 'serverAuth', subject: '/CN=server-only-client' });
    const upstream = await startUpstream(scope);
    p = await startProxy(
      scope,
      `
listen: { https: "127.0.0.1:0" }
sites:
  - hosts: [api.test, 127.0.0.1]
    certificates: [{ cert: ${server.chainFile}, key: ${server.keyFile} }]
    clientAuth: { mode: require, refuseAt: handshake, ca: [${root.certFile}] }
    routes: [{ path: /, upstream: "${upstream.origin}" }]
  - hosts: [http.test]
    certificates: [{ cert: ${server.chainFile}, key: ${server.keyFile} }]
    clientAuth: { mode: require, ca: [${root.certFile}] }
    routes: [{ path: /, upstream: "${upstream.origin}" }]
`,
    );
  });

  const clientAuthFailures = async (reason: string) => (await p.proxy.metrics.clientAuthFailures.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;

  for (const [version, alert] of [
    ['-tls1_3', /alert certificate required/],
    ['-tls1_2', /alert handshake failure/],
  ] as const) {
    test(`a client without a certificate fails the handshake (${version}: ${alert.source}), logged as no_certificate`, async () => {
      const before = await clientAuthFailures('no_certificate');
      const logged = p.logs.length;
      const r = await sClientRequest(p.port, 'api.test', [version, '-CAfile', root.certFile]);
      assert.equal(r.status, null, 'no HTTP answer');
      assert.match(r.stderr + r.stdout, alert);
      const event = await p.waitForLog((l) => l.event === 'handshake_failed' && l.reason === 'no_certificate', { after: logged });
      assert.equal(event.sni, 'api.test');
      assert.equal(await clientAuthFailures('no_certificate'), before + 1);
    });
  }

  test('the same client on a site that refuses over HTTP completes the handshake and gets 401 no_certificate', async () => {
    const r = await sClientRequest(p.port, 'http.test', ['-tls1_3', '-CAfile', root.certFile]);
    assert.equal(r.status, '401');
  });

  test('a valid certificate is served', async () => {
    const r = await curl([...resolveTo('api.test', p.port), '--cacert', root.certFile, '--cert', good.chainFile, '--key', good.keyFile, '-o', '/dev/null', '-w', '%{http_code}', `https://api.test:${p.port}/`]);
    assert.equal(r.stdout, '200', r.stderr);
  });

  for (const [name, leaf, reason] of [
    ['a certificate of a foreign CA', () => foreign, 'unknown_ca'],
    ['a server-only certificate', () => serverOnly, 'wrong_key_usage'],
  ] as const) {
    test(`${name} is closed before any request and logged as ${reason} with the certificate`, async () => {
      const logged = p.logs.length;
      const r = await curl([...resolveTo('api.test', p.port), '--cacert', root.certFile, '--cert', leaf().chainFile, '--key', leaf().keyFile, '-o', '/dev/null', '-w', '%{http_code}', `https://api.test:${p.port}/`]);
      assert.notEqual(r.code, 0, 'curl gets no answer');
      assert.equal(r.stdout, '000');
      const event = await p.waitForLog((l) => l.event === 'client_cert_rejected' && l.reason === reason, { after: logged });
      assert.match(String(event.subject), new RegExp(`CN=${leaf() === foreign ? 'foreign' : 'server-only'}-client`));
    });
  }

  test('without a server name (the site found by address) an invalid certificate is still refused, logged from OpenSSL\'s code', async () => {
    const logged = p.logs.length;
    const r = await sClient(p.port, ['-tls1_3', '-noservername', '-CAfile', root.certFile, '-cert', foreign.certFile, '-key', foreign.keyFile]);
    assert.doesNotMatch(r.stdout, /HTTP\/1\.1/);
    const event = await p.waitForLog((l) => l.event === 'handshake_failed' && l.reason === 'unknown_ca', { after: logged });
    assert.match(String(event.detail), /SELF_SIGNED|UNABLE_TO/);
  });
});
