import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { curl, resolveTo, sClientRequest } from '../helpers/clients.js';
import { runCli, startCli } from '../helpers/cli-process.js';
import { startOcspResponder, expectOcspStatus } from '../helpers/ocsp-responder.js';
import { closedPort } from '../helpers/upstream.js';
import { TestPki, type Ca, type Leaf } from '../helpers/pki.js';
import { startProxy, suiteScope, tempDir, type RunningProxy, type Scope } from '../helpers/proxy.js';
import { startCrlServer } from '../helpers/crl-server.js';

const pki = new TestPki();
after(() => pki.cleanup());
const day = 86_400_000;

interface Answer {
  status: number;
  reason: string | null;
}

async function call(p: RunningProxy, host: string, ca: Ca, client: Leaf | null, extra: string[] = []): Promise<Answer> {
  const creds = client ? ['--cert', client.chainFile, '--key', client.keyFile] : [];
  const r = await curl([...resolveTo(host, p.port), '--cacert', ca.certFile, ...creds, '-w', '\n@@%{http_code}', ...extra, `https://${host}:${p.port}/who/`]);
  assert.equal(r.code, 0, r.stderr);
  const [body, status] = r.stdout.split('\n@@') as [string, string];
  return { status: Number(status), reason: Number(status) === 200 ? null : (JSON.parse(body) as { reason: string }).reason };
}

/** One mutual-TLS site answering builtin:whoami; `clientAuth` is the flow mapping of its clientAuth. */
function siteYaml(host: string, server: Leaf, clientAuth: string): string {
  return `
  - hosts: [${host}]
    certificates: [{ cert: ${server.chainFile}, key: ${server.keyFile} }]
    clientAuth: ${clientAuth}
    routes: [{ path: /, upstream: "builtin:whoami" }]`;
}

function startSites(t: Scope, sites: string, dir?: string, top = ''): Promise<RunningProxy> {
  return startProxy(t, `listen: { https: "127.0.0.1:0" }\n${top}sites:${sites}\n`, dir);
}

const rejected = (p: RunningProxy, reason: string) => p.logs.filter((l) => l.event === 'client_cert_rejected' && l.reason === reason);

describe('revocation by CRL', () => {
  const scope = suiteScope();
  let p: RunningProxy;
  let root: Ca;
  let inter: Ca;
  let server: Leaf;
  let good: Leaf;
  let revoked: Leaf;
  let viaInter: Leaf;
  let cdpGood: Leaf;
  let cdpRevoked: Leaf;
  let crlFile: string;
  let crls: Awaited<ReturnType<typeof startCrlServer>>;

  before(async () => {
    root = pki.root('crl-root');
    inter = pki.intermediate('crl-inter', root);
    const cdpCa = pki.root('cdp-root');
    crls = await startCrlServer(scope);
    const dir = tempDir(scope);
    server = pki.leaf('crl-server', root, { dns: ['file.test', 'der.test', 'url.test', 'chain.test', 'cdp.test', 'stale.test', 'stale-allow.test'] });
    good = pki.leaf('crl-good', root, { eku: 'clientAuth' });
    revoked = pki.leaf('crl-revoked', root, { eku: 'clientAuth' });
    viaInter = pki.leaf('crl-via-inter', inter, { eku: 'clientAuth' });
    cdpGood = pki.leaf('cdp-good', cdpCa, { eku: 'clientAuth', crlUrl: crls.url('cdp.crl') });
    cdpRevoked = pki.leaf('cdp-revoked', cdpCa, { eku: 'clientAuth', crlUrl: crls.url('cdp.crl') });
    pki.revoke(root, revoked.certFile);
    pki.revoke(cdpCa, cdpRevoked.certFile);
    crlFile = pki.crl(root, join(dir, 'root.crl'));
    const derFile = pki.crl(root, join(dir, 'root.der.crl'), { der: true });
    const interCrl = pki.crl(inter, join(dir, 'inter.crl'));
    const staleFile = pki.crl(root, join(dir, 'stale.crl'), { lastUpdate: new Date(Date.now() - 8 * day), nextUpdate: new Date(Date.now() - day) });
    crls.files.set('root.crl', readFileSync(crlFile));
    crls.files.set('cdp.crl', readFileSync(pki.crl(cdpCa, join(dir, 'cdp.crl'), { der: true })));
    const site = (host: string, clientAuth: string) => siteYaml(host, server, clientAuth);
    p = await startSites(
      scope,
      `${site('file.test', `{ mode: require, ca: [${root.certFile}], crl: [${crlFile}] }`)}${site('der.test', `{ mode: require, ca: [${root.certFile}], crl: [${derFile}] }`)}${site(
        'url.test',
        `{ mode: require, ca: [${root.certFile}], crl: ["${crls.url('root.crl')}"] }`,
      )}${site('chain.test', `{ mode: require, ca: [${root.certFile}, ${inter.certFile}], crl: [${crlFile}, ${interCrl}] }`)}${site(
        'cdp.test',
        `{ mode: require, ca: [${cdpCa.certFile}], crl: [] }`,
      )}${site('stale.test', `{ mode: require, ca: [${root.certFile}], crl: [${staleFile}] }`)}${site(
        'stale-allow.test',
        `{ mode: require, ca: [${root.certFile}], crl: [${staleFile}], onRevocationUnavailable: allow }`,
      )}`,
    );
  });

  for (const [host, what] of [
    ['file.test', 'a PEM CRL file'],
    ['der.test', 'a DER CRL file'],
    ['url.test', 'a CRL fetched over http'],
  ] as const) {
    test(`accepts a certificate that ${what} does not list, and rejects one it lists with reason revoked`, async () => {
      assert.deepEqual(await call(p, host, root, good), { status: 200, reason: null });
      assert.deepEqual(await call(p, host, root, revoked), { status: 403, reason: 'revoked' });
      const event = rejected(p, 'revoked').at(-1) as Record<string, unknown>;
      assert.equal(event.sni, host);
      assert.equal(event.source, 'crl');
      assert.equal(event.serial, new X509Certificate(revoked.certPem).serialNumber.toUpperCase());
      assert.match(String(event.detail), /listed in the CRL from/);
    });
  }

  test('checks every certificate below the root: a leaf under an intermediate needs the intermediate CRL and the root CRL', async () => {
    assert.deepEqual(await call(p, 'chain.test', root, viaInter), { status: 200, reason: null });
    // the root's CRL covers the intermediate, the intermediate's CRL covers the leaf: without it, no fresh answer for the leaf
    assert.deepEqual(await call(p, 'file.test', root, viaInter), { status: 403, reason: 'revocation_unavailable' });
    const event = rejected(p, 'revocation_unavailable').at(-1) as Record<string, unknown>;
    assert.match(String(event.detail), /CN=crl-via-inter.*no CRL of O=Portcullis Tests,CN=crl-inter/);
  });

  test('fetches the CRL distribution point named in a client certificate when crl: is given', async () => {
    assert.deepEqual(await call(p, 'cdp.test', root, cdpGood), { status: 200, reason: null });
    assert.deepEqual(await call(p, 'cdp.test', root, cdpRevoked), { status: 403, reason: 'revoked' });
    assert.equal(crls.hits.get('cdp.crl'), 1, 'one fetch serves every certificate of that distribution point');
  });

  test('an expired CRL gives no fresh answer: rejected under reject, admitted with a warning under allow', async () => {
    assert.deepEqual(await call(p, 'stale.test', root, good), { status: 403, reason: 'revocation_unavailable' });
    assert.match(String(rejected(p, 'revocation_unavailable').at(-1)?.detail), /expired at/);
    const before = p.logs.length;
    assert.deepEqual(await call(p, 'stale-allow.test', root, good), { status: 200, reason: null });
    const warning = await p.waitForLog((l) => l.event === 'revocation_unavailable_allowed', { after: before });
    assert.equal(warning.level, 40);
    assert.equal(warning.site, 'stale-allow.test');
    // a CRL proves a revocation even after its nextUpdate
    assert.deepEqual(await call(p, 'stale-allow.test', root, revoked), { status: 403, reason: 'revoked' });
  });

  test('counts decisions by result and source', async () => {
    const text = await p.proxy.metrics.registry.metrics();
    assert.match(text, /portcullis_revocation_checks_total\{result="revoked",source="crl",policy="reject"\} [1-9]/);
    assert.match(text, /portcullis_revocation_checks_total\{result="unavailable",source="none",policy="allow"\} [1-9]/);
    assert.match(text, /portcullis_client_auth_failures_total\{reason="revoked"\} [1-9]/);
    assert.match(text, new RegExp(`portcullis_crl_next_update_timestamp_seconds\\{source="${crlFile.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}"\\} \\d+`));
  });
});

describe('revocation by OCSP', () => {
  const scope = suiteScope();
  let p: RunningProxy;
  let root: Ca;
  let good: Leaf;
  let revoked: Leaf;
  let viaConfig: Leaf;
  let unasked: Leaf;

  before(async () => {
    root = pki.root('ocsp-root');
    const responder = await startOcspResponder(scope, pki, root, { nmin: 60 });
    const server = pki.leaf('ocsp-server', root, { dns: ['ocsp.test', 'configured.test', 'down.test', 'down-allow.test'] });
    good = pki.leaf('ocsp-good', root, { eku: 'clientAuth', ocspUrl: responder.url });
    revoked = pki.leaf('ocsp-revoked', root, { eku: 'clientAuth', ocspUrl: responder.url });
    viaConfig = pki.leaf('ocsp-no-aia', root, { eku: 'clientAuth' });
    // answers are cached per certificate, whichever site asked: this one is asked only where the responder is down
    unasked = pki.leaf('ocsp-unasked', root, { eku: 'clientAuth', ocspUrl: responder.url });
    pki.revoke(root, revoked.certFile);
    // the responder answers from the index as it is now
    await expectOcspStatus(responder, revoked.certFile, root, 'revoked');
    await expectOcspStatus(responder, good.certFile, root, 'good');
    const down = `http://127.0.0.1:${await closedPort()}/`;
    const site = (host: string, clientAuth: string) => siteYaml(host, server, `{ mode: require, ca: [${root.certFile}], ${clientAuth} }`);
    p = await startSites(
      scope,
      `${site('ocsp.test', 'ocsp: true')}${site('configured.test', `ocsp: true, ocspResponder: "${responder.url}"`)}${site('down.test', `ocsp: true, ocspResponder: "${down}"`)}${site(
        'down-allow.test',
        `ocsp: true, ocspResponder: "${down}", onRevocationUnavailable: allow`,
      )}`,
      undefined,
      `log: { access: ${join(tempDir(scope), 'access.log')} }\n`,
    );
  });

  test('accepts a certificate its responder says is good and rejects one it says is revoked', async () => {
    assert.deepEqual(await call(p, 'ocsp.test', root, good), { status: 200, reason: null });
    assert.deepEqual(await call(p, 'ocsp.test', root, revoked), { status: 403, reason: 'revoked' });
    const event = rejected(p, 'revoked').at(-1) as Record<string, unknown>;
    assert.equal(event.source, 'ocsp');
    assert.match(String(event.detail), /OCSP responder http:\/\/127\.0\.0\.1:\d+\/ says revoked at /);
  });

  test("records each request with the verdict it was judged by: the responder's answer arrives after the handshake admitted the certificate", async () => {
    // the first test's requests, one per certificate
    const recordOf = (commonName: string) => p.waitForAccess((r) => r.sni === 'ocsp.test' && String(r.clientSubject).includes(`CN=${commonName}`));
    const ofRevoked = await recordOf('ocsp-revoked');
    assert.deepEqual([ofRevoked.status, ofRevoked.reason, ofRevoked.clientCert], [403, 'revoked', 'invalid']);
    const ofGood = await recordOf('ocsp-good');
    assert.deepEqual([ofGood.status, ofGood.reason, ofGood.clientCert], [200, null, 'valid']);
  });

  test('asks the configured responder for a certificate that names none', async () => {
    assert.deepEqual(await call(p, 'configured.test', root, viaConfig), { status: 200, reason: null });
    assert.deepEqual(await call(p, 'ocsp.test', root, viaConfig), { status: 403, reason: 'revocation_unavailable' });
    assert.match(String(rejected(p, 'revocation_unavailable').at(-1)?.detail), /no OCSP responder/);
  });

  test('with the responder down: rejected under reject, admitted and warned under allow', async () => {
    assert.deepEqual(await call(p, 'down.test', root, unasked), { status: 403, reason: 'revocation_unavailable' });
    assert.match(String(rejected(p, 'revocation_unavailable').at(-1)?.detail), /CN=ocsp-unasked.*could not be fetched/);
    const before = p.logs.length;
    assert.deepEqual(await call(p, 'down-allow.test', root, unasked), { status: 200, reason: null });
    const warning = await p.waitForLog((l) => l.event === 'revocation_unavailable_allowed', { after: before });
    assert.equal(warning.site, 'down-allow.test');
  });

  test('counts OCSP queries by answer', async () => {
    const text = await p.proxy.metrics.registry.metrics();
    assert.match(text, /portcullis_ocsp_requests_total\{purpose="client",result="good"\} [1-9]/);
    assert.match(text, /portcullis_ocsp_requests_total\{purpose="client",result="revoked"\} 1/);
    assert.match(text, /portcullis_ocsp_requests_total\{purpose="client",result="unreachable"\} [1-9]/);
    assert.match(text, /portcullis_revocation_checks_total\{result="revoked",source="ocsp",policy="reject"\} 1/);
  });
});

describe('CRL changes at run time', () => {
  for (const [version, flag] of [
    ['TLS 1.3', '-tls1_3'],
    ['TLS 1.2', '-tls1_2'],
  ] as const) {
    test(`rejects a client revoked after its session was cached when it resumes that session (${version})`, async (t) => {
      const root = pki.root(`resume-root-${flag}`);
      const server = pki.leaf(`resume-server-${flag}`, root, { dns: ['resume.test'] });
      const client = pki.leaf(`resume-client-${flag}`, root, { eku: 'clientAuth' });
      const dir = tempDir(t);
      const crl = pki.crl(root, join(dir, 'clients.crl'));
      const p = await startSites(t, siteYaml('resume.test', server, `{ mode: require, ca: [${root.certFile}], crl: [${crl}] }`), dir);
      const session = join(dir, 'session.pem');
      const args = [flag, '-CAfile', root.certFile, '-cert', client.certFile, '-key', client.keyFile];
      const first = await sClientRequest(p.port, 'resume.test', [...args, '-sess_out', session]);
      assert.equal(first.status, '200', first.stdout + first.stderr);
      const again = await sClientRequest(p.port, 'resume.test', [...args, '-sess_in', session]);
      assert.equal(again.reused, true, 'the session resumes while the certificate is good');
      assert.equal(again.status, '200');

      const loads = p.logs.filter((l) => l.event === 'crl_loaded').length;
      pki.revoke(root, client.certFile);
      pki.crl(root, crl);
      await p.waitForLog((l) => l.event === 'crl_loaded' && Number(l.revoked) === 1, { after: 0, timeoutMs: 45_000 });
      assert.ok(p.logs.filter((l) => l.event === 'crl_loaded').length > loads);

      const resumed = await sClientRequest(p.port, 'resume.test', [...args, '-sess_in', session]);
      assert.equal(resumed.reused, true, 'OpenSSL resumed the session of the now revoked certificate');
      assert.equal(resumed.status, '403', resumed.stdout);
      const event = rejected(p, 'revoked').at(-1) as Record<string, unknown>;
      assert.equal(event.resumed, true);
      assert.equal(event.source, 'crl');
    });
  }

  test('ignores and reports a replacement CRL signed by the wrong key, and keeps using the previous one', async (t) => {
    const root = pki.root('swap-root');
    const impostor = pki.intermediate('swap-impostor', pki.root('swap-other'), { commonName: 'swap-root' });
    const server = pki.leaf('swap-server', root, { dns: ['swap.test'] });
    const client = pki.leaf('swap-client', root, { eku: 'clientAuth' });
    const dir = tempDir(t);
    const crl = pki.crl(root, join(dir, 'clients.crl'));
    const p = await startSites(t, siteYaml('swap.test', server, `{ mode: require, ca: [${root.certFile}], crl: [${crl}] }`), dir);
    assert.equal((await call(p, 'swap.test', root, client)).status, 200);
    pki.revoke(root, client.certFile);
    pki.crl(root, crl, { signedBy: impostor });
    const report = await p.waitForLog((l) => l.event === 'crl_rejected', { timeoutMs: 45_000 });
    assert.equal(report.reason, 'bad_signature');
    assert.equal(report.keepsUsing, 'the previous CRL');
    assert.match(String(report.detail), /did not sign it/);
    assert.deepEqual(await call(p, 'swap.test', root, client), { status: 200, reason: null });
    assert.match(await p.proxy.metrics.registry.metrics(), /portcullis_crl_loads_total\{result="bad_signature"\} 1/);
  });
});

describe('the instant deny list', () => {
  test('closes a live keep-alive connection at once and refuses the certificate afterwards, with source deny-list', async (t) => {
    const root = pki.root('deny-root');
    const server = pki.leaf('deny-server', root, { dns: ['deny.test'] });
    const client = pki.leaf('deny-client', root, { eku: 'clientAuth' });
    const other = pki.leaf('deny-other', root, { eku: 'clientAuth' });
    const p = await startSites(t, siteYaml('deny.test', server, `{ mode: require, ca: [${root.certFile}] }`));
    const open = (leaf: Leaf) => {
      const socket = tlsConnect({ port: p.port, host: '127.0.0.1', servername: 'deny.test', ca: readFileSync(root.certFile), cert: readFileSync(leaf.certFile), key: readFileSync(leaf.keyFile), ALPNProtocols: ['http/1.1'] });
      socket.on('error', () => {});
      return socket;
    };
    const ask = async (socket: ReturnType<typeof open>) => {
      socket.write('GET /who/ HTTP/1.1\r\nHost: deny.test\r\n\r\n');
      let text = '';
      while (!/\r\n\r\n[\s\S]*\}$/.test(text)) text += ((await once(socket, 'data')) as [Buffer])[0].toString();
      return text;
    };
    const denied = open(client);
    const bystander = open(other);
    assert.match(await ask(denied), /^HTTP\/1\.1 200/);
    assert.match(await ask(bystander), /^HTTP\/1\.1 200/);

    const fingerprint = `sha256:${new X509Certificate(client.certPem).fingerprint256}`;
    const closed = once(denied, 'close');
    assert.equal(p.proxy.setDenyList([{ fingerprint, note: 'laptop stolen', addedAt: new Date().toISOString() }]), 1);
    await closed;
    const event = rejected(p, 'revoked').at(-1) as Record<string, unknown>;
    assert.equal(event.source, 'deny-list');
    assert.equal(event.closedLiveConnection, true);
    assert.match(String(event.detail), /laptop stolen/);
    assert.match(await ask(bystander), /^HTTP\/1\.1 200/, 'other clients keep their connections');
    bystander.destroy();

    assert.deepEqual(await call(p, 'deny.test', root, client), { status: 403, reason: 'revoked' });
    p.proxy.setDenyList([]);
    assert.deepEqual(await call(p, 'deny.test', root, client), { status: 200, reason: null });
  });
});

describe('portcullis deny', () => {
  for (const workers of [1, 2]) {
    test(`add closes the live connection of a running instance (workers: ${workers}), list shows it, remove readmits it`, async (t) => {
      const root = pki.root(`deny-cli-root-${workers}`);
      const server = pki.leaf(`deny-cli-server-${workers}`, root, { dns: ['api.test'] });
      const client = pki.leaf(`deny-cli-client-${workers}`, root, { eku: 'clientAuth' });
      const dir = tempDir(t);
      const file = join(dir, 'portcullis.yaml');
      writeFileSync(
        file,
        `listen: { https: "127.0.0.1:0" }
workers: ${workers}
log: { access: off }
sites:
  - hosts: [api.test]
    certificates: [{ cert: ${server.chainFile}, key: ${server.keyFile} }]
    clientAuth: { mode: require, ca: [${root.certFile}] }
    routes: [{ path: /, upstream: "builtin:whoami" }]
`,
      );
      const deny = (...args: string[]) => runCli(['deny', ...args, '--config', file]);
      // before any instance runs, the list is only saved
      const early = await deny('add', '--serial', '0xDEAD', '--issuer', 'CN=Elsewhere,O=Example');
      assert.equal(early.code, 0, early.stderr);
      assert.match(early.stdout, /no running instance answers .*applies when Portcullis starts/);

      const cli = startCli(t, ['start', '--config', file], dir);
      const port = Number((await cli.waitFor(/serving HTTPS on 127\.0\.0\.1:(\d+)/))[1]);
      const socket = tlsConnect({ port, host: '127.0.0.1', servername: 'api.test', ca: readFileSync(root.certFile), cert: readFileSync(client.certFile), key: readFileSync(client.keyFile), ALPNProtocols: ['http/1.1'] });
      socket.on('error', () => {});
      t.after(() => socket.destroy());
      socket.write('GET / HTTP/1.1\r\nHost: api.test\r\n\r\n');
      const [first] = (await once(socket, 'data')) as [Buffer];
      assert.match(first.toString(), /^HTTP\/1\.1 200/);

      const closed = once(socket, 'close');
      const added = await deny('add', '--cert', client.certFile, '--note', 'offboarded');
      assert.equal(added.code, 0, added.stderr);
      assert.match(added.stdout, /added to the deny list: sha256:/);
      // with workers, "applied" is each worker's confirmation, and the count is theirs
      assert.match(added.stdout, workers === 1 ? /deny list applied \(2 entries\): 1 open connection\(s\) closed/ : /deny list applied \(2 entries\): applied by 2 workers, 1 open connection\(s\) closed/);
      await closed;
      await cli.waitFor(/"event":"client_cert_rejected".*"reason":"revoked".*"source":"deny-list"/);

      const listed = await deny('list');
      assert.match(listed.stdout, /serial DEAD issuer "CN=Elsewhere,O=Example"/);
      assert.match(listed.stdout, new RegExp(`sha256:${new X509Certificate(client.certPem).fingerprint256}.*\\(offboarded\\)`));
      assert.equal(statSync(join(dir, '.portcullis', 'deny-list.json')).mode & 0o777, 0o600);

      const fresh = await curl([...resolveTo('api.test', port), '--cacert', root.certFile, '--cert', client.certFile, '--key', client.keyFile, '-w', '%{http_code}', '-o', '/dev/null', `https://api.test:${port}/`]);
      assert.equal(fresh.stdout, '403');

      const removed = await deny('remove', '--cert', client.certFile);
      assert.equal(removed.code, 0, removed.stderr);
      const again = await curl([...resolveTo('api.test', port), '--cacert', root.certFile, '--cert', client.certFile, '--key', client.keyFile, '-w', '%{http_code}', '-o', '/dev/null', `https://api.test:${port}/`]);
      assert.equal(again.stdout, '200');
    });
  }

  test('refuses a malformed fingerprint with the fix, and a corrupt list file without losing it', async (t) => {
    const dir = tempDir(t);
    const file = join(dir, 'portcullis.yaml');
    writeFileSync(file, 'dataDir: state\n');
    const bad = await runCli(['deny', 'add', '--config', file, '--fingerprint', 'AB:CD']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--fingerprint AB:CD is not a SHA-256 fingerprint; give it as "sha256:" and 64 hex digits/);
    mkdirSync(join(dir, 'state'));
    const corruptText = '{"version":1,"entries":[{"fingerprint":"sha256:zz"}]}';
    writeFileSync(join(dir, 'state', 'deny-list.json'), corruptText);
    const corrupt = await runCli(['deny', 'list', '--config', file]);
    assert.equal(corrupt.code, 1);
    assert.match(corrupt.stderr, /deny-list\.json entries\[0\]: --fingerprint sha256:zz is not a SHA-256 fingerprint/);
    const add = await runCli(['deny', 'add', '--config', file, '--fingerprint', `sha256:${'AB'.repeat(32)}`]);
    assert.equal(add.code, 1);
    assert.equal(readFileSync(join(dir, 'state', 'deny-list.json'), 'utf8'), corruptText, 'the unreadable list is left for the operator to repair, not overwritten');
  });
});
