import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { mkdirSync, readFileSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { after, describe, test } from 'node:test';
import { sClientRequest } from '../helpers/clients.js';
import { startCli, type CliProcess } from '../helpers/cli-process.js';
import { TestPki, type Leaf } from '../helpers/pki.js';
import { tempDir, type Scope } from '../helpers/proxy.js';

const pki = new TestPki();
after(() => pki.cleanup());
const root = pki.root('rotation-root');
const inter = pki.intermediate('rotation-inter', root);
const hour = 3_600_000;

/** Replaces a file the way renewal tools do: a complete new file renamed over the old one. */
function replace(file: string, content: string): void {
  writeFileSync(`${file}.new`, content);
  renameSync(`${file}.new`, file);
}

function install(dir: string, leaf: Leaf, chain = true): void {
  replace(join(dir, 'key.pem'), readFileSync(leaf.keyFile, 'utf8'));
  replace(join(dir, 'cert.pem'), readFileSync(chain ? leaf.chainFile : leaf.certFile, 'utf8'));
}

async function start(t: Scope, dir: string, certFile = 'cert.pem', keyFile = 'key.pem'): Promise<{ cli: CliProcess; port: number }> {
  writeFileSync(
    join(dir, 'portcullis.yaml'),
    `listen: { https: "127.0.0.1:0" }
log: { access: off }
sites:
  - hosts: [api.test]
    certificates: [{ cert: ${certFile}, key: ${keyFile} }]
    routes: [{ path: /, upstream: "builtin:whoami" }]
`,
  );
  const cli = startCli(t, ['start', '--config', join(dir, 'portcullis.yaml')], dir);
  const port = Number((await cli.waitFor(/"https":"127\.0\.0\.1:(\d+)"/))[1]);
  return { cli, port };
}

function connect(port: number): TLSSocket {
  const socket = tlsConnect({ port, host: '127.0.0.1', servername: 'api.test', ca: readFileSync(root.certFile), ALPNProtocols: ['http/1.1'] });
  socket.on('error', () => {});
  return socket;
}

/** The fingerprint of the certificate a new handshake gets. */
async function served(port: number): Promise<string> {
  const socket = connect(port);
  await once(socket, 'secureConnect');
  const fingerprint = socket.getPeerX509Certificate()?.fingerprint256 ?? '';
  socket.destroy();
  return fingerprint;
}

/** The first certificate of a chain file, complete: the leaf a renewal tool may write alone. */
const leafOnly = (chain: string) => chain.slice(0, chain.indexOf('-----END CERTIFICATE-----') + '-----END CERTIFICATE-----\n'.length);

const fingerprintOf = (leaf: Leaf) => new X509Certificate(leaf.certPem).fingerprint256;

async function ask(socket: TLSSocket): Promise<string> {
  socket.write('GET / HTTP/1.1\r\nHost: api.test\r\n\r\n');
  let text = '';
  while (!/\r\n\r\n[\s\S]*\}$/.test(text)) text += ((await once(socket, 'data')) as [Buffer])[0].toString();
  return text.split('\r\n')[0] as string;
}

describe('certificate files replaced on disk', () => {
  test('a valid new pair is served to new handshakes while an open connection keeps working and a stored session resumes', async (t) => {
    const dir = tempDir(t);
    const first = pki.leaf('rotation-first', inter, { dns: ['api.test'] });
    const second = pki.leaf('rotation-second', inter, { dns: ['api.test'] });
    install(dir, first);
    const { cli, port } = await start(t, dir);
    assert.equal(await served(port), fingerprintOf(first));
    const open = connect(port);
    t.after(() => open.destroy());
    assert.equal(await ask(open), 'HTTP/1.1 200 OK');
    const session = join(dir, 'session.pem');
    const saved = await sClientRequest(port, 'api.test', ['-CAfile', root.certFile, '-sess_out', session]);
    assert.equal(saved.status, '200');

    install(dir, second);
    await cli.waitFor(/"event":"certificate_rotated"/);
    assert.equal(await served(port), fingerprintOf(second));
    assert.equal(await ask(open), 'HTTP/1.1 200 OK', 'the connection made before the swap still works');
    const resumed = await sClientRequest(port, 'api.test', ['-CAfile', root.certFile, '-sess_in', session]);
    assert.equal(resumed.reused, true, 'a session stored before the swap resumes');
    assert.equal(resumed.status, '200');
  });

  const refusals: [string, (dir: string) => void, RegExp][] = [
    ['a key that does not match the certificate', (dir) => replace(join(dir, 'cert.pem'), readFileSync(pki.leaf('rotation-other', inter, { dns: ['api.test'] }).chainFile, 'utf8')), /key does not match/],
    ['an expired certificate', (dir) => install(dir, pki.leaf('rotation-expired', inter, { dns: ['api.test'], notBefore: new Date(Date.now() - 48 * hour), notAfter: new Date(Date.now() - hour) })), /expired/],
    ['a chain missing its intermediate', (dir) => install(dir, pki.leaf('rotation-no-inter', inter, { dns: ['api.test'] }), false), /append the missing intermediate certificate/],
    ['the served certificate rewritten without its intermediate', (dir) => replace(join(dir, 'cert.pem'), leafOnly(readFileSync(join(dir, 'cert.pem'), 'utf8'))), /append the missing intermediate certificate/],
    ['a certificate that does not cover the site', (dir) => install(dir, pki.leaf('rotation-san-gap', inter, { dns: ['other.test'] })), /no certificate of this site covers \\"api\.test\\"/],
    ['a certificate about to expire', (dir) => install(dir, pki.leaf('rotation-short', inter, { dns: ['api.test'], notAfter: new Date(Date.now() + 2 * hour) })), /less than tls\.rotationMinValidity/],
  ];
  for (const [name, change, reason] of refusals) {
    test(`refuses ${name} with its reason and keeps serving the old pair`, async (t) => {
      const dir = tempDir(t);
      const good = pki.leaf(`rotation-kept-${name.length}`, inter, { dns: ['api.test'] });
      install(dir, good);
      const { cli, port } = await start(t, dir);
      change(dir);
      const refused = await cli.waitFor(/"event":"reload_refused"[^\n]*/);
      assert.match(refused[0], reason);
      assert.match(refused[0], /"trigger":"certificate files changed"/);
      assert.equal(await served(port), fingerprintOf(good));
    });
  }

  test('picks up a Kubernetes-style swap of the ..data symlink', async (t) => {
    const dir = tempDir(t);
    const mounted = join(dir, 'tls');
    const versions = (name: string, leaf: Leaf) => {
      mkdirSync(join(mounted, name), { recursive: true });
      writeFileSync(join(mounted, name, 'tls.crt'), readFileSync(leaf.chainFile));
      writeFileSync(join(mounted, name, 'tls.key'), readFileSync(leaf.keyFile));
    };
    const first = pki.leaf('k8s-first', inter, { dns: ['api.test'] });
    const second = pki.leaf('k8s-second', inter, { dns: ['api.test'] });
    versions('..2026_11_28_01', first);
    symlinkSync('..2026_11_28_01', join(mounted, '..data'));
    symlinkSync('..data/tls.crt', join(mounted, 'tls.crt'));
    symlinkSync('..data/tls.key', join(mounted, 'tls.key'));
    const { cli, port } = await start(t, dir, 'tls/tls.crt', 'tls/tls.key');
    assert.equal(await served(port), fingerprintOf(first));

    // what the kubelet does: a new timestamped folder, a new symlink, renamed over ..data in one step
    versions('..2026_11_28_02', second);
    symlinkSync('..2026_11_28_02', join(mounted, '..data_tmp'));
    renameSync(join(mounted, '..data_tmp'), join(mounted, '..data'));
    await cli.waitFor(/"event":"certificate_rotated"/);
    assert.equal(await served(port), fingerprintOf(second));
  });
});

