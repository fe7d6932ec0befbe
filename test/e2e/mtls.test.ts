import assert from 'node:assert/strict';
import { once } from 'node:events';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadConfigFile } from '../../src/config/index.js';
import { connect as tlsConnect } from 'node:tls';
import { curl, resolveTo, run, sClientRequest } from '../helpers/clients.js';
import { TestPki, type Ca, type Leaf } from '../helpers/pki.js';
import { startProxy, suiteScope, tempDir, type RunningProxy } from '../helpers/proxy.js';
import { startUpstream, type EchoAnswer } from '../helpers/upstream.js';

const pki = new TestPki();
after(() => pki.cleanup());
const day = 86_400_000;

describe('mutual TLS', () => {
  const scope = suiteScope();
  let p: RunningProxy;
  let root: Ca;
  let inter: Ca;
  let clients: Record<string, { cert: string; key: string }>;
  let goodFingerprint: string;
  let upstreamOrigin: string;

  before(async () => {
    root = pki.root('mtls-root');
    inter = pki.intermediate('mtls-clients', root);
    const foreign = pki.root('foreign-root');
    const dir = tempDir(scope);
    const server = pki.leaf('mtls-server', root, { dns: ['api.test', 'both.test', 'opt.test', 'open.test'] });
    const good = pki.leaf('good-client', inter, {
      eku: 'clientAuth',
      uris: ['spiffe://example.test/billing/api'],
      dns: ['svc.clients.example.test'],
      emails: ['ops@example.test'],
      subject: '/CN=reporting/O=Example',
    });
    const other = pki.leaf('other-client', inter, { eku: 'clientAuth', uris: ['spiffe://example.test/orders/api'], dns: ['a.b.clients.example.test'], subject: '/CN=other/O=Example' });
    // under the billing prefix as written, ".../admin" once an upstream decodes %2e (RFC 3986 §2.3)
    const encodedDots = pki.leaf('encoded-dots-client', inter, { eku: 'clientAuth', uris: ['spiffe://example.test/billing/%2e%2e/admin'], subject: '/CN=encoded/O=Example' });
    let deepCa = root;
    for (let i = 1; i <= 4; i++) deepCa = pki.intermediate(`deep-${i}`, deepCa);
    const deep = pki.leaf('deep-client', deepCa, { eku: 'clientAuth' });
    const impostor = pki.intermediate('mtls-clients-impostor', root, { commonName: 'mtls-clients' });
    const forged = pki.leaf('forged-client', impostor, { eku: 'clientAuth', noAuthorityKeyId: true });
    const selfSignedKey = join(dir, 'self.key');
    const selfSigned = join(dir, 'self.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', selfSignedKey, '-out', selfSigned, '-days', '2', '-subj', '/CN=self-signed', '-addext', 'extendedKeyUsage=clientAuth'], { stdio: 'ignore' });
    const leafOf = (l: Leaf, chain = true) => ({ cert: chain ? l.chainFile : l.certFile, key: l.keyFile });
    clients = {
      good: leafOf(good),
      goodLeafOnly: leafOf(good, false),
      other: leafOf(other),
      encodedDots: leafOf(encodedDots),
      foreign: leafOf(pki.leaf('foreign-client', foreign, { eku: 'clientAuth' })),
      foreignServerOnly: leafOf(pki.leaf('foreign-server-only-client', foreign, { eku: 'serverAuth' })),
      foreignServerOnlyWithRoot: { cert: join(dir, 'foreign-server-only-with-root.pem'), key: '' },
      foreignExpired: leafOf(pki.leaf('foreign-expired-client', foreign, { eku: 'clientAuth', notBefore: new Date(Date.now() - 30 * day), notAfter: new Date(Date.now() - day) })),
      selfSigned: { cert: selfSigned, key: selfSignedKey },
      expired: leafOf(pki.leaf('expired-client', inter, { eku: 'clientAuth', notBefore: new Date(Date.now() - 30 * day), notAfter: new Date(Date.now() - day) })),
      future: leafOf(pki.leaf('future-client', inter, { eku: 'clientAuth', notBefore: new Date(Date.now() + 10 * day), notAfter: new Date(Date.now() + 40 * day) })),
      serverOnly: leafOf(pki.leaf('server-only-client', inter, { eku: 'serverAuth' })),
      deep: leafOf(deep),
      badSignature: { cert: join(dir, 'bad-signature.pem'), key: forged.keyFile },
    };
    // a client that sends its foreign root along: OpenSSL meets SELF_SIGNED_CERT_IN_CHAIN, then INVALID_PURPOSE
    const foreignServerOnly = pki.leaf('foreign-server-only-client-2', foreign, { eku: 'serverAuth' });
    writeFileSync(clients.foreignServerOnlyWithRoot!.cert, foreignServerOnly.certPem + readFileSync(foreign.certFile, 'utf8'));
    clients.foreignServerOnlyWithRoot = { cert: clients.foreignServerOnlyWithRoot!.cert, key: foreignServerOnly.keyFile };
    // signed by an impostor CA with the real intermediate's name: sent with the real intermediate,
    // the chain builds by name and the leaf's signature does not verify
    writeFileSync(clients.badSignature!.cert, forged.certPem + readFileSync(inter.certFile, 'utf8'));
    goodFingerprint = execFileSync('openssl', ['x509', '-noout', '-fingerprint', '-sha256', '-in', good.certFile], { encoding: 'utf8' }).split('=')[1]!.trim();

    const upstream = await startUpstream(scope);
    upstreamOrigin = upstream.origin;
    const routes = (extra = '') => `
    routes:
      - { path: /billing/, upstream: "${upstreamOrigin}", allow: { uri: ["spiffe://example.test/billing/*"] } }
      - { path: /dns/, upstream: "${upstreamOrigin}", allow: { dns: ["*.clients.example.test"] } }
      - { path: /subject/, upstream: "${upstreamOrigin}", allow: { subject: ["CN=reporting,O=Example"] } }
      - { path: /fp/, upstream: "${upstreamOrigin}", allow: { fingerprints: ["sha256:${goodFingerprint.toLowerCase().replace(/:/g, '')}"] } }
      - { path: /who/, upstream: "builtin:whoami" }
      - { path: /, upstream: "${upstreamOrigin}" }${extra}`;
    p = await startProxy(
      scope,
      `
listen: { https: "127.0.0.1:0" }
sites:
  - hosts: [api.test]
    certificates: [{ cert: ${server.chainFile}, key: ${server.keyFile} }]
    clientAuth: { mode: require, ca: [${root.certFile}] }${routes()}
  - hosts: [both.test]
    certificates: [{ cert: ${server.chainFile}, key: ${server.keyFile} }]
    clientAuth: { mode: require, ca: [${root.certFile}, ${inter.certFile}] }
    routes: [{ path: /, upstream: "${upstreamOrigin}" }]
  - hosts: [opt.test]
    certificates: [{ cert: ${server.chainFile}, key: ${server.keyFile} }]
    clientAuth: { mode: optional, ca: [${root.certFile}], forwardHeader: X-Client-Identity }
    routes:
      - { path: /public/, upstream: "${upstreamOrigin}", clientCert: optional }
      - { path: /, upstream: "${upstreamOrigin}" }
  - hosts: [open.test]
    certificates: [{ cert: ${server.chainFile}, key: ${server.keyFile} }]
    routes: [{ path: /, upstream: "${upstreamOrigin}" }]
`,
    );
  });

  interface Answer {
    status: number;
    body: string;
    headers: string;
  }
  const call = async (host: string, path: string, client: string | null, extra: string[] = []): Promise<Answer> => {
    const creds = client ? ['--cert', clients[client]!.cert, '--key', clients[client]!.key] : [];
    const r = await curl([...resolveTo(host, p.port), '--cacert', root.certFile, ...creds, '-D', '-', '-w', '\n@@%{http_code}', ...extra, `https://${host}:${p.port}${path}`]);
    assert.equal(r.code, 0, r.stderr);
    const [raw, status] = r.stdout.split('\n@@') as [string, string];
    const split = raw.indexOf('\r\n\r\n');
    return { status: Number(status), headers: raw.slice(0, split), body: raw.slice(split + 4) };
  };
  const reasonOf = (a: Answer) => (JSON.parse(a.body) as { reason: string }).reason;
  const echo = (a: Answer) => JSON.parse(a.body) as EchoAnswer;

  for (const [version, flags] of [
    ['TLS 1.3', ['--tlsv1.3']],
    ['TLS 1.2', ['--tls-max', '1.2']],
  ] as const) {
    test(`accepts a valid leaf whose intermediate the client sends (${version}) and forwards its identity`, async () => {
      const a = await call('api.test', '/x', 'good', [...flags]);
      assert.equal(a.status, 200);
      const identity = echo(a).headers['x-client-cert'] as string;
      assert.match(identity, /^Hash=[0-9a-f]{64};Subject="O=Example,CN=reporting";Issuer="O=Portcullis Tests,CN=mtls-clients";URI="spiffe:\/\/example.test\/billing\/api";DNS="svc.clients.example.test";Email="ops@example.test"$/);
      assert.equal(identity.slice(5, 69), goodFingerprint.replace(/:/g, '').toLowerCase());
    });

    const rejections: [string, string | null, number, string, string][] = [
      ['no certificate', null, 401, 'no_certificate', 'api.test'],
      ['a certificate from a foreign CA', 'foreign', 403, 'unknown_ca', 'api.test'],
      // the most fundamental failure first: OpenSSL reports the last one it met
      ['a serverAuth-only certificate from a foreign CA', 'foreignServerOnly', 403, 'unknown_ca', 'api.test'],
      ['an expired certificate from a foreign CA', 'foreignExpired', 403, 'unknown_ca', 'api.test'],
      ['a serverAuth-only certificate sent with its foreign root', 'foreignServerOnlyWithRoot', 403, 'unknown_ca', 'api.test'],
      ['a self-signed certificate', 'selfSigned', 403, 'unknown_ca', 'api.test'],
      ['an expired certificate', 'expired', 403, 'expired', 'api.test'],
      ['a certificate not valid yet', 'future', 403, 'not_yet_valid', 'api.test'],
      ['a serverAuth-only certificate', 'serverOnly', 403, 'wrong_key_usage', 'api.test'],
      ['a chain deeper than verifyDepth', 'deep', 403, 'chain_too_long', 'api.test'],
      ['a certificate naming a site CA that did not sign it', 'badSignature', 403, 'bad_signature', 'both.test'],
    ];
    for (const [name, client, status, reason, host] of rejections) {
      test(`refuses ${name} with ${status} ${reason}, closes the connection, and logs what was presented (${version})`, async () => {
        const before = p.logs.length;
        const a = await call(host, '/x', client, [...flags, '--http1.1']);
        assert.equal(a.status, status);
        assert.equal(reasonOf(a), reason);
        assert.match(a.headers, /\r\nconnection: close(\r\n|$)/i);
        const event = p.logs.slice(before).find((l) => l.event === 'client_cert_rejected');
        assert.ok(event, 'a client_cert_rejected event');
        assert.equal(event.reason, reason);
        assert.equal(event.sni, host);
        assert.equal(event.remoteAddress, '127.0.0.1');
        if (client !== null) {
          assert.ok(event.subject && event.issuer && event.serial, JSON.stringify(event));
          assert.match(String(event.fingerprint), /^sha256:[0-9A-F:]{95}$/);
        }
      });
    }
  }

  test('accepts a leaf sent alone when the site lists its intermediate', async () => {
    assert.equal((await call('both.test', '/x', 'goodLeafOnly')).status, 200);
    assert.equal(reasonOf(await call('api.test', '/x', 'goodLeafOnly')), 'unknown_ca', 'without the intermediate the chain is incomplete');
  });

  test('counts every refusal by reason', async () => {
    const metric = await p.proxy.metrics.clientAuthFailures.get();
    for (const reason of ['no_certificate', 'unknown_ca', 'expired', 'not_yet_valid', 'wrong_key_usage', 'chain_too_long', 'bad_signature']) {
      assert.ok((metric.values.find((v) => v.labels.reason === reason)?.value ?? 0) >= 2, reason);
    }
  });

  const allowCases: [string, string, string, number][] = [
    ['uri', '/billing/pay', 'good', 200],
    ['uri', '/billing/pay', 'other', 403],
    ['uri (its URI has percent-encoded dot segments)', '/billing/pay', 'encodedDots', 403],
    ['dns wildcard', '/dns/x', 'good', 200],
    ['dns wildcard, two labels deep', '/dns/x', 'other', 403],
    ['subject', '/subject/x', 'good', 200],
    ['subject', '/subject/x', 'other', 403],
    ['fingerprint', '/fp/x', 'good', 200],
    ['fingerprint', '/fp/x', 'other', 403],
  ];
  for (const [matcher, path, client, status] of allowCases) {
    test(`${status === 200 ? 'admits' : 'refuses'} the ${client} certificate on a route allowing by ${matcher}`, async () => {
      const a = await call('api.test', path, client);
      assert.equal(a.status, status);
      if (status === 403) {
        assert.equal(reasonOf(a), 'identity_not_allowed');
        assert.ok(p.logs.some((l) => l.event === 'client_cert_rejected' && l.reason === 'identity_not_allowed' && l.route === path.replace(/[^/]*$/, '')));
      }
    });
  }

  test('answers 421 to a handshake with a site without mutual TLS that asks for a site with it', async () => {
    const a = await call('open.test', '/x', null, ['-H', 'Host: api.test']);
    assert.equal(a.status, 421);
    assert.equal(reasonOf(a), 'sni_host_mismatch');
  });

  test('never forwards a client-supplied identity header, in any case or number', async () => {
    const spoof = ['-H', 'X-Client-Cert: Hash=forged', '-H', 'x-client-cert: Subject="CN=admin"'];
    const withCert = echo(await call('api.test', '/x', 'good', spoof)).headers['x-client-cert'] as string;
    assert.match(withCert, /^Hash=[0-9a-f]{64};/);
    assert.doesNotMatch(withCert, /forged|admin/);
    assert.equal(echo(await call('open.test', '/x', null, spoof)).headers['x-client-cert'], undefined);
    const optional = echo(await call('opt.test', '/public/x', null, ['-H', 'X-Client-Identity: Hash=forged']));
    assert.equal(optional.headers['x-client-identity'], undefined);
  });

  test('optional mode: routes decide; a presented but invalid certificate is refused even where none is needed', async () => {
    const anonymous = await call('opt.test', '/public/x', null);
    assert.equal(anonymous.status, 200);
    assert.doesNotMatch(anonymous.headers, /connection: close/i);
    const required = await call('opt.test', '/x', null);
    assert.equal(required.status, 401);
    assert.equal(reasonOf(required), 'no_certificate');
    const withCert = await call('opt.test', '/x', 'good');
    assert.equal(withCert.status, 200);
    assert.match(echo(withCert).headers['x-client-identity'] as string, /^Hash=/);
    assert.equal(reasonOf(await call('opt.test', '/public/x', 'expired')), 'expired');
  });

  test('openssl s_client presents a certificate, and a resumed session keeps the identity', async (t) => {
    const session = join(tempDir(t), 'session.pem');
    // s_client sends the first certificate of -cert only; -cert_chain adds the intermediate
    const args = ['-CAfile', root.certFile, '-cert', clients.goodLeafOnly!.cert, '-key', clients.good!.key, '-cert_chain', inter.certFile];
    const first = await sClientRequest(p.port, 'api.test', [...args, '-sess_out', session]);
    assert.equal(first.status, '200');
    const resumed = await sClientRequest(p.port, 'api.test', ['-CAfile', root.certFile, '-sess_in', session]);
    assert.equal(resumed.reused, true);
    assert.equal(resumed.status, '200', 'the identity comes back with the session');
    const expired = await sClientRequest(p.port, 'api.test', ['-CAfile', root.certFile, '-cert', clients.expired!.cert, '-key', clients.expired!.key, '-cert_chain', inter.certFile]);
    assert.equal(expired.status, '403');
  });

  test('gnutls-cli, a second TLS stack, is admitted with a valid certificate and refused with a foreign one', async () => {
    const gnutls = (client: string) =>
      run(
        'gnutls-cli',
        ['--x509cafile', root.certFile, '--x509certfile', clients[client]!.cert, '--x509keyfile', clients[client]!.key, '--sni-hostname', 'api.test', '--verify-hostname', 'api.test', '-p', String(p.port), '127.0.0.1'],
        'GET /who/ HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n',
      );
    const ok = await gnutls('good');
    assert.match(ok.stdout, /HTTP\/1\.1 200 OK/);
    assert.match(ok.stdout, /"status": "valid"/);
    const refused = await gnutls('foreign');
    assert.match(refused.stdout, /HTTP\/1\.1 403 Forbidden/);
    assert.match(refused.stdout, /"reason":"unknown_ca"/);
  });
});

describe('mutual TLS and reload', () => {
  test('a reload that adds clientAuth to a running site asks new connections for certificates', async (t) => {
    const root = pki.root('mtls-reload-root');
    const server = pki.leaf('reload-server', root, { dns: ['api.test'] });
    const client = pki.leaf('reload-client', root, { eku: 'clientAuth' });
    const base = `
listen: { https: "127.0.0.1:0" }
sites:
  - hosts: [api.test]
    certificates: [{ cert: ${server.chainFile}, key: ${server.keyFile} }]
    routes: [{ path: /, upstream: "builtin:whoami" }]
`;
    const p = await startProxy(t, base);
    const status = async (withCert: boolean) =>
      (await curl([...resolveTo('api.test', p.port), '--cacert', root.certFile, ...(withCert ? ['--cert', client.chainFile, '--key', client.keyFile] : []), '-o', '/dev/null', '-w', '%{http_code}', `https://api.test:${p.port}/`])).stdout;
    assert.equal(await status(false), '200');
    const file = join(p.dir, 'portcullis.yaml');
    writeFileSync(file, `${base.trimEnd()}\n    clientAuth: { mode: require, ca: [${root.certFile}] }\n`);
    await p.proxy.reload(loadConfigFile(file));
    assert.equal(await status(false), '401');
    assert.equal(await status(true), '200');
  });
});

describe('mutual TLS against hostile or unusual clients', () => {
  const scope = suiteScope();
  let p: RunningProxy;
  let root: Ca;
  let inter: Ca;
  let dir: string;
  let upstreamOrigin: string;
  const files: Record<string, { cert: string; key: string }> = {};
  let deepKey: string;

  before(async () => {
    root = pki.root('hostile-root');
    inter = pki.intermediate('hostile-clients', root);
    dir = tempDir(scope);
    const server = pki.leaf('hostile-server', root, { dns: ['api.test', 'depth.test', 'open.test'] });
    const leafOf = (l: Leaf) => ({ cert: l.chainFile, key: l.keyFile });
    files.good = leafOf(pki.leaf('hostile-good', inter, { eku: 'clientAuth' }));
    files.noEku = leafOf(pki.leaf('no-eku', inter, { eku: null }));
    // exactly verifyDepth (2) CA certificates above the leaf: inter and root
    files.atLimit = files.good;
    let deep = root;
    for (let i = 1; i <= 3; i++) deep = pki.intermediate(`hostile-deep-${i}`, deep);
    const deepLeaf = pki.leaf('hostile-deep-leaf', deep, { eku: 'clientAuth', noAuthorityKeyId: true });
    files.deep = leafOf(deepLeaf);
    files.deepParts = { cert: deepLeaf.certFile, key: join(dir, 'deep-intermediates.pem') };
    writeFileSync(files.deepParts.key, readFileSync(deepLeaf.chainFile, 'utf8').slice(deepLeaf.certPem.length));
    deepKey = deepLeaf.keyFile;
    // a decoy after the leaf: self-signed, named like the leaf's issuer, then the real chain
    const decoyKey = join(dir, 'decoy.key');
    const decoy = join(dir, 'decoy.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', decoyKey, '-out', decoy, '-days', '2', '-subj', '/CN=hostile-deep-3/O=Portcullis Tests', '-addext', 'basicConstraints=critical,CA:TRUE'], { stdio: 'ignore' });
    files.decoy = { cert: join(dir, 'decoy-chain.pem'), key: deepLeaf.keyFile };
    writeFileSync(files.decoy.cert, deepLeaf.certPem + readFileSync(decoy, 'utf8') + readFileSync(deepLeaf.chainFile, 'utf8').slice(deepLeaf.certPem.length));
    const expiredInter = pki.intermediate('hostile-expired-inter', root, { notBefore: new Date(Date.now() - 30 * day), notAfter: new Date(Date.now() - day) });
    files.underExpired = leafOf(pki.leaf('under-expired-inter', expiredInter, { eku: 'clientAuth' }));
    // a certificate whose notAfter no Date can read: made with openssl, then one digit of the time changed
    const badTimeKey = join(dir, 'bad-time.key');
    const badTimeGood = join(dir, 'bad-time-source.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', badTimeKey, '-out', badTimeGood, '-days', '2', '-subj', '/CN=bad-time', '-addext', 'extendedKeyUsage=clientAuth'], { stdio: 'ignore' });
    const der = Buffer.from(readFileSync(badTimeGood, 'utf8').replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
    let seen = 0;
    for (let i = 0; i < der.length - 2; i++) {
      if (der[i] === 0x17 && der[i + 1] === 0x0d && ++seen === 2) {
        der[i + 12] = 0x21; // "!" in the seconds of notAfter
        break;
      }
    }
    files.badTime = { cert: join(dir, 'bad-time.pem'), key: badTimeKey };
    writeFileSync(files.badTime.cert, `-----BEGIN CERTIFICATE-----\n${der.toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END CERTIFICATE-----\n`);

    const upstream = await startUpstream(scope);
    upstreamOrigin = upstream.origin;
    p = await startProxy(
      scope,
      `
listen: { https: "127.0.0.1:0" }
log: { access: ${join(dir, 'access.log')} }
sites:
  - hosts: [api.test]
    certificates: [{ cert: ${server.chainFile}, key: ${server.keyFile} }]
    clientAuth: { mode: require, ca: [${root.certFile}], forwardHeader: x-ssl-client }
    routes: [{ path: /, upstream: "${upstreamOrigin}" }]
  - hosts: [depth.test]
    certificates: [{ cert: ${server.chainFile}, key: ${server.keyFile} }]
    clientAuth: { mode: require, ca: [${root.certFile}], verifyDepth: 2 }
    routes: [{ path: /, upstream: "${upstreamOrigin}" }]
  - hosts: [open.test]
    certificates: [{ cert: ${server.chainFile}, key: ${server.keyFile} }]
    routes: [{ path: /, upstream: "${upstreamOrigin}" }]
`,
      dir,
    );
  });

  const call = async (host: string, client: string | null, extra: string[] = []) => {
    const creds = client ? ['--cert', files[client]!.cert, '--key', files[client]!.key] : [];
    const r = await curl([...resolveTo(host, p.port), '--cacert', root.certFile, ...creds, '-w', '\n@@%{http_code}', ...extra, `https://${host}:${p.port}/x`]);
    const [body, status] = r.stdout.split('\n@@') as [string, string];
    return { status: Number(status), body };
  };

  test('a certificate with an unreadable date is refused, and the proxy keeps serving', async () => {
    const a = await call('api.test', 'badTime');
    assert.equal(a.status, 403);
    assert.ok(['unknown_ca', 'bad_certificate'].includes((JSON.parse(a.body) as { reason: string }).reason));
    assert.equal((await call('api.test', 'good')).status, 200);
  });

  test('a valid leaf under an expired intermediate is refused with expired', async () => {
    assert.equal((JSON.parse((await call('api.test', 'underExpired')).body) as { reason: string }).reason, 'expired');
  });

  test('a leaf without any extended key usage is refused with wrong_key_usage', async () => {
    assert.equal((JSON.parse((await call('api.test', 'noEku')).body) as { reason: string }).reason, 'wrong_key_usage');
  });

  test('a chain of exactly verifyDepth CA certificates is accepted, one more is refused, and decoys do not hide the length', async () => {
    assert.equal((await call('depth.test', 'atLimit')).status, 200);
    assert.equal((JSON.parse((await call('depth.test', 'deep')).body) as { reason: string }).reason, 'chain_too_long');
    const decoyed = await call('depth.test', 'decoy');
    assert.equal(decoyed.status, 403, 'a decoy in the chain must not make a long chain pass');
  });

  test('a session made by a refused connection is refused again when it resumes', async (t) => {
    const session = join(tempDir(t), 'deep-session.pem');
    const args = ['-CAfile', root.certFile, '-cert', files.deepParts!.cert, '-key', deepKey, '-cert_chain', files.deepParts!.key];
    const first = await sClientRequest(p.port, 'depth.test', [...args, '-sess_out', session]);
    assert.equal(first.status, '403');
    const again = await sClientRequest(p.port, 'depth.test', ['-CAfile', root.certFile, '-sess_in', session]);
    assert.equal(again.reused, true);
    assert.equal(again.status, '403');
    assert.match(again.stdout, /"reason":"chain_too_long"/);
  });

  test("drops every site's identity header, also spelled with underscores, from every request", async () => {
    const spoof = ['-H', 'X-SSL-Client: Hash=forged', '-H', 'x-client-cert: Hash=forged', '-H', 'x_ssl_client: forged', '-H', 'X_Client_Cert: forged', '-H', 'x_forwarded_for: 6.6.6.6'];
    const open = JSON.parse((await call('open.test', null, spoof)).body) as EchoAnswer;
    for (const name of ['x-ssl-client', 'x-client-cert', 'x_ssl_client', 'x_client_cert', 'x_forwarded_for']) assert.equal(open.headers[name], undefined, name);
    const mtls = JSON.parse((await call('api.test', 'good', spoof)).body) as EchoAnswer;
    assert.match(mtls.headers['x-ssl-client'] as string, /^Hash=[0-9a-f]{64};/);
    assert.equal(mtls.headers['x_ssl_client'], undefined);
  });

  test('the access log carries the client identity', async () => {
    await call('api.test', 'good');
    await p.flushAccessLog();
    const lines = readFileSync(join(dir, 'access.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const line = lines.find((l) => l.clientCert === 'valid');
    assert.ok(line);
    assert.equal(line.clientSubject, 'CN=hostile-good');
    assert.match(String(line.clientSerial), /^[0-9A-F]+$/);
    assert.match(String(line.clientFingerprint), /^sha256:/);
  });

  test('a reload that changes the client CAs: resumed sessions show a certificate again, open connections are told to reconnect', async (t) => {
    const other = pki.root('hostile-other-root');
    const session = join(tempDir(t), 'session.pem');
    const creds = ['-cert', files.good!.cert, '-key', files.good!.key, '-cert_chain', inter.certFile];
    const first = await sClientRequest(p.port, 'api.test', ['-CAfile', root.certFile, ...creds, '-sess_out', session]);
    assert.equal(first.status, '200');
    // a Node client with a certificate, kept open across the reload
    const kept = tlsConnect({ port: p.port, host: '127.0.0.1', servername: 'api.test', ca: readFileSync(root.certFile), cert: readFileSync(files.good!.cert), key: readFileSync(files.good!.key), ALPNProtocols: ['http/1.1'] });
    kept.on('error', () => {});
    await once(kept, 'secureConnect');
    const file = join(dir, 'portcullis.yaml');
    writeFileSync(file, readFileSync(file, 'utf8').replace(`clientAuth: { mode: require, ca: [${root.certFile}], forwardHeader: x-ssl-client }`, `clientAuth: { mode: require, ca: [${other.certFile}], forwardHeader: x-ssl-client }`));
    await p.proxy.reload(loadConfigFile(file));
    const resumed = await sClientRequest(p.port, 'api.test', ['-CAfile', root.certFile, '-sess_in', session]);
    assert.equal(resumed.reused, false, 'no session from the old policy resumes');
    assert.equal(resumed.status, '401');
    kept.write('GET /x HTTP/1.1\r\nHost: api.test\r\n\r\n');
    let text = '';
    kept.on('data', (d: Buffer) => (text += d.toString()));
    await once(kept, 'close');
    assert.match(text, /^HTTP\/1\.1 421 /);
    assert.match(text, /"reason":"policy_changed"/);
  });
});
