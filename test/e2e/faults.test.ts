import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { curl, resolveTo } from '../helpers/clients.js';
import { linesOf, nextLine, startInstance, type LogLine } from '../helpers/cli-logs.js';
import { TestPki, type Ca, type Leaf } from '../helpers/pki.js';
import { tempDir, type Scope } from '../helpers/proxy.js';

/**
 * Faults at run time against a real `portcullis start`: the certificate,
 * key, client CA and CRL files it serves from, deleted or corrupted under
 * it. Hanging revocation and ACME endpoints are in faults-hanging.test.ts,
 * a worker killed with SIGKILL in faults-workers.test.ts.
 */

const pki = new TestPki();
after(() => pki.cleanup());

/** Writes a file in place (open, truncate, write): how a careless tool or a full disk corrupts one. */
const overwrite = (file: string, content: string) => writeFileSync(file, content);

/** Replaces a file the way renewal tools do: a complete new file renamed over the old one. */
function replace(file: string, content: string): void {
  writeFileSync(`${file}.new`, content);
  renameSync(`${file}.new`, file);
}

const fingerprintOf = (leaf: Leaf) => new X509Certificate(leaf.certPem).fingerprint256;

/** One verifying handshake trusting only `root` (so the server must send its intermediate): the leaf's fingerprint, or the client's error. */
function servedChain(port: number, root: Ca, servername = 'api.test'): Promise<{ fingerprint: string } | { error: string }> {
  return new Promise((resolve) => {
    const socket = tlsConnect({ port, host: '127.0.0.1', servername, ca: readFileSync(root.certFile), ALPNProtocols: ['http/1.1'] });
    socket.once('secureConnect', () => {
      resolve({ fingerprint: socket.getPeerX509Certificate()?.fingerprint256 ?? '' });
      socket.destroy();
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message }));
  });
}

/** An HTTP/1.1 keep-alive connection trusting `root`; `ask` sends one request on it and resolves with the status line. */
function keepAlive(t: Scope, port: number, root: Ca, servername = 'api.test'): { socket: TLSSocket; ask(): Promise<string> } {
  const socket = tlsConnect({ port, host: '127.0.0.1', servername, ca: readFileSync(root.certFile), ALPNProtocols: ['http/1.1'] });
  socket.on('error', () => {});
  t.after(() => socket.destroy());
  return {
    socket,
    async ask() {
      socket.write(`GET / HTTP/1.1\r\nHost: ${servername}\r\n\r\n`);
      let text = '';
      while (!/\r\n\r\n[\s\S]*\}$/.test(text)) text += ((await once(socket, 'data')) as [Buffer])[0].toString();
      return text.split('\r\n')[0] as string;
    },
  };
}

/** Starts an instance with one site serving cert.pem/key.pem of `dir` with builtin:whoami; `clientAuth` is a flow mapping or nothing. */
function start(t: Scope, dir: string, clientAuth?: string) {
  const file = join(dir, 'portcullis.yaml');
  writeFileSync(
    file,
    `listen: { https: "127.0.0.1:0" }
log: { access: off }
sites:
  - hosts: [api.test]
    certificates: [{ cert: cert.pem, key: key.pem }]
${clientAuth ? `    clientAuth: ${clientAuth}\n` : ''}    routes: [{ path: /, upstream: "builtin:whoami" }]
`,
  );
  return startInstance(t, dir, file);
}

/** What a reload triggered by changed files ended in: the reload_refused or reloaded line. */
const reloadOutcome = (line: LogLine) => (line.event === 'reload_refused' || line.event === 'reloaded') && line.trigger === 'certificate files changed';

interface Issue {
  readonly path: string;
  readonly message: string;
}

/** Asserts `line` is a refused reload whose issues include one at `path` whose message matches `message`. */
function assertRefused(line: LogLine, path: string, message: RegExp): void {
  assert.equal(line.event, 'reload_refused', `the reload was not refused: ${JSON.stringify(line)}`);
  assert.equal(line.code, 'PCL_CONFIG_INVALID', `refused without naming the problem: ${JSON.stringify(line)}`);
  const issues = (line.issues ?? []) as Issue[];
  assert.ok(
    issues.some((i) => i.path === path && message.test(i.message)),
    `no issue at ${path} matching ${message}: ${JSON.stringify(issues)}`,
  );
}

describe('certificate files deleted or corrupted under a running instance', { concurrency: true }, () => {
  const root = pki.root('faults-files-root');
  const inter = pki.intermediate('faults-files-inter', root);
  const install = (dir: string, leaf: Leaf) => {
    replace(join(dir, 'key.pem'), readFileSync(leaf.keyFile, 'utf8'));
    replace(join(dir, 'cert.pem'), readFileSync(leaf.chainFile, 'utf8'));
  };

  test('keeps serving the old pair while both files are deleted, and serves a valid pair put back in their place', async (t) => {
    const dir = tempDir(t);
    const first = pki.leaf('faults-deleted-first', inter, { dns: ['api.test'] });
    const second = pki.leaf('faults-deleted-second', inter, { dns: ['api.test'] });
    install(dir, first);
    const { cli, port } = await start(t, dir);
    const open = keepAlive(t, port, root);
    assert.equal(await open.ask(), 'HTTP/1.1 200 OK');

    const mark = cli.stderr.length;
    rmSync(join(dir, 'cert.pem'));
    rmSync(join(dir, 'key.pem'));
    // the two removals may arrive as one change or two: the reload that sees both names both
    const refused = await nextLine(cli, mark, (l) => reloadOutcome(l) && ((l.issues ?? []) as Issue[]).some((i) => i.path.endsWith('.key')));
    assertRefused(refused, 'sites[0].certificates[0].cert', new RegExp(`file ${join(dir, 'cert.pem')} does not exist`));
    assertRefused(refused, 'sites[0].certificates[0].key', new RegExp(`file ${join(dir, 'key.pem')} does not exist`));
    assert.ok(linesOf(cli, mark).every((l) => l.event !== 'reloaded'), 'no reload applied while the files are gone');

    assert.deepEqual(await servedChain(port, root), { fingerprint: fingerprintOf(first) }, 'new handshakes still get the old pair, with its chain');
    assert.equal(await open.ask(), 'HTTP/1.1 200 OK', 'the open connection goes on');

    const back = cli.stderr.length;
    install(dir, second);
    const rotated = await nextLine(cli, back, (l) => l.event === 'certificate_rotated' || l.event === 'reload_refused');
    assert.equal(rotated.event, 'certificate_rotated', JSON.stringify(rotated));
    assert.equal(rotated.file, join(dir, 'cert.pem'));
    assert.deepEqual(await servedChain(port, root), { fingerprint: fingerprintOf(second) });
    assert.equal(await open.ask(), 'HTTP/1.1 200 OK');
  });

  const pemOf = (der: Buffer) => `-----BEGIN CERTIFICATE-----\n${(der.toString('base64').match(/.{1,64}/g) as string[]).join('\n')}\n-----END CERTIFICATE-----\n`;
  /** The leaf with the last byte of its public key flipped (an EC point off the curve), followed by its intermediate: every byte still PEM and DER. */
  const corruptedPublicKey = (leaf: Leaf) => {
    const cert = new X509Certificate(leaf.certPem);
    const der = Buffer.from(cert.raw);
    const spki = cert.publicKey.export({ type: 'spki', format: 'der' });
    const at = der.indexOf(spki);
    assert.ok(at > 0);
    der[at + spki.length - 1] = (der[at + spki.length - 1] as number) ^ 0x01;
    return pemOf(der) + readFileSync(inter.certFile, 'utf8');
  };
  const flipOneCharacter = (pem: string, line: number) => {
    const lines = pem.split('\n');
    lines[line] = (lines[line] as string).replace(/^./, (c) => (c === 'A' ? 'B' : 'A'));
    return lines.join('\n');
  };

  const cert = 'sites[0].certificates[0].cert';
  const key = 'sites[0].certificates[0].key';
  const corruptions: [string, 'cert.pem' | 'key.pem', (leaf: Leaf) => string, string, RegExp][] = [
    ['a certificate file overwritten with garbage', 'cert.pem', () => 'garbage\n', cert, /cert\.pem holds no PEM certificate/],
    ['an empty certificate file', 'cert.pem', () => '', cert, /cert\.pem holds no PEM certificate/],
    ['a certificate file cut off inside the leaf', 'cert.pem', (leaf) => readFileSync(leaf.chainFile, 'utf8').slice(0, 300), cert, /cert\.pem holds no PEM certificate/],
    ['a certificate file cut off inside the intermediate', 'cert.pem', (leaf) => readFileSync(leaf.chainFile, 'utf8').slice(0, -200), cert, /cert\.pem/],
    ['a certificate whose public key bytes were corrupted', 'cert.pem', corruptedPublicKey, cert, /cert\.pem/],
    ['a key file overwritten with garbage', 'key.pem', () => 'garbage\n', key, /key\.pem must hold exactly one PEM private key, found 0/],
    ['an empty key file', 'key.pem', () => '', key, /key\.pem must hold exactly one PEM private key, found 0/],
    ['a key file cut off', 'key.pem', (leaf) => readFileSync(leaf.keyFile, 'utf8').slice(0, 100), key, /key\.pem must hold exactly one PEM private key, found 0/],
    ['a key with one corrupted character', 'key.pem', (leaf) => flipOneCharacter(readFileSync(leaf.keyFile, 'utf8'), 1), key, /key\.pem does not parse as a private key/],
    ['the key of another certificate', 'key.pem', () => readFileSync(pki.leaf(`faults-stranger-${Math.random()}`, inter, { dns: ['api.test'] }).keyFile, 'utf8'), key, /key does not match certificate .*cert\.pem/],
  ];
  for (const [name, target, content, path, reason] of corruptions) {
    test(`refuses ${name} with its reason, keeps serving the old chain, and takes a valid pair put back`, async (t) => {
      const dir = tempDir(t);
      const good = pki.leaf(`faults-good-${name.replace(/\W+/g, '-')}`, inter, { dns: ['api.test'] });
      const next = pki.leaf(`faults-next-${name.replace(/\W+/g, '-')}`, inter, { dns: ['api.test'] });
      install(dir, good);
      const { cli, port } = await start(t, dir);
      const open = keepAlive(t, port, root);
      assert.equal(await open.ask(), 'HTTP/1.1 200 OK');

      const mark = cli.stderr.length;
      overwrite(join(dir, target), content(good));
      const outcome = await nextLine(cli, mark, reloadOutcome);
      assertRefused(outcome, path, reason);
      assert.deepEqual(await servedChain(port, root), { fingerprint: fingerprintOf(good) }, 'new handshakes get the old certificate and its complete chain');
      assert.equal(await open.ask(), 'HTTP/1.1 200 OK', 'the open connection goes on');

      const back = cli.stderr.length;
      install(dir, next);
      const rotated = await nextLine(cli, back, (l) => l.event === 'certificate_rotated' || l.event === 'reload_refused');
      assert.equal(rotated.event, 'certificate_rotated', JSON.stringify(rotated));
      assert.deepEqual(await servedChain(port, root), { fingerprint: fingerprintOf(next) });
    });
  }
});

interface Answer {
  status: string;
  reason: string | null;
}

/** One mutual-TLS request with curl presenting `client` (or none). */
async function mtls(port: number, server: Ca, client: Leaf): Promise<Answer> {
  const r = await curl([...resolveTo('api.test', port), '--cacert', server.certFile, '--cert', client.certFile, '--key', client.keyFile, '-w', '\n%{http_code}', `https://api.test:${port}/`]);
  assert.equal(r.code, 0, r.stderr);
  const cut = r.stdout.lastIndexOf('\n');
  const status = r.stdout.slice(cut + 1);
  return { status, reason: status === '200' ? null : ((JSON.parse(r.stdout.slice(0, cut)) as { reason?: string }).reason ?? null) };
}

describe('client CA and CRL files deleted or corrupted under a running instance', { concurrency: true }, () => {
  const serverRoot = pki.root('faults-trust-server-root');
  const server = pki.leaf('faults-trust-server', serverRoot, { dns: ['api.test'] });
  const installServer = (dir: string) => {
    writeFileSync(join(dir, 'cert.pem'), readFileSync(server.chainFile));
    writeFileSync(join(dir, 'key.pem'), readFileSync(server.keyFile));
  };

  test('the previous client CA stays in force while its file is deleted, garbage or not a CA, and a new bundle put back is picked up', async (t) => {
    const clients = pki.root('faults-ca-clients');
    const partners = pki.root('faults-ca-partners');
    const member = pki.leaf('faults-ca-member', clients, { eku: 'clientAuth' });
    const partner = pki.leaf('faults-ca-partner', partners, { eku: 'clientAuth' });
    const dir = tempDir(t);
    installServer(dir);
    const caFile = join(dir, 'clients-ca.pem');
    writeFileSync(caFile, readFileSync(clients.certFile));
    const { cli, port } = await start(t, dir, '{ mode: require, ca: [clients-ca.pem] }');
    const unchanged = async () => {
      assert.deepEqual(await mtls(port, serverRoot, member), { status: '200', reason: null }, 'a client of the CA in force is admitted');
      assert.deepEqual(await mtls(port, serverRoot, partner), { status: '403', reason: 'unknown_ca' }, 'a client of another CA is still refused');
    };
    await unchanged();

    const ca = 'sites[0].clientAuth.ca[0]';
    const faults: [string, () => void, RegExp][] = [
      ['deleted', () => rmSync(caFile), new RegExp(`cannot read ${caFile} \\(ENOENT\\)`)],
      ['garbage', () => overwrite(caFile, 'garbage\n'), /clients-ca\.pem holds no PEM certificate/],
      ['cut off', () => overwrite(caFile, readFileSync(clients.certFile, 'utf8').slice(0, 200)), /clients-ca\.pem holds no PEM certificate/],
      ['a client certificate instead of a CA', () => overwrite(caFile, member.certPem), /clients-ca\.pem holds CN=faults-ca-member, which is not a CA certificate/],
    ];
    for (const [what, fault, reason] of faults) {
      const mark = cli.stderr.length;
      fault();
      const outcome = await nextLine(cli, mark, reloadOutcome);
      assert.equal(outcome.event, 'reload_refused', `${what}: ${JSON.stringify(outcome)}`);
      assertRefused(outcome, ca, reason);
      await unchanged();
    }

    const mark = cli.stderr.length;
    replace(caFile, readFileSync(clients.certFile, 'utf8') + readFileSync(partners.certFile, 'utf8'));
    const applied = await nextLine(cli, mark, reloadOutcome);
    assert.equal(applied.event, 'reloaded', JSON.stringify(applied));
    assert.deepEqual(await mtls(port, serverRoot, member), { status: '200', reason: null });
    assert.deepEqual(await mtls(port, serverRoot, partner), { status: '200', reason: null }, 'the CA added by the new bundle is in force');
  });

  test('the previous CRL stays in force while its file is deleted, garbage or cut off, revoked clients stay refused, and a new CRL is picked up', async (t) => {
    const clients = pki.root('faults-crl-clients');
    const good = pki.leaf('faults-crl-good', clients, { eku: 'clientAuth' });
    const revoked = pki.leaf('faults-crl-revoked', clients, { eku: 'clientAuth' });
    const later = pki.leaf('faults-crl-later', clients, { eku: 'clientAuth' });
    pki.revoke(clients, revoked.certFile);
    const dir = tempDir(t);
    installServer(dir);
    const crlFile = pki.crl(clients, join(dir, 'clients.crl'));
    const crlPem = readFileSync(crlFile, 'utf8');
    const { cli, port } = await start(t, dir, `{ mode: require, ca: [${clients.certFile}], crl: [clients.crl] }`);
    const unchanged = async () => {
      assert.deepEqual(await mtls(port, serverRoot, good), { status: '200', reason: null });
      assert.deepEqual(await mtls(port, serverRoot, revoked), { status: '403', reason: 'revoked' });
      assert.deepEqual(await mtls(port, serverRoot, later), { status: '200', reason: null });
    };
    await unchanged();

    const faults: [string, () => void, string, RegExp][] = [
      ['deleted', () => rmSync(crlFile), 'unreadable', new RegExp(`ENOENT: no such file or directory, open '${crlFile}'`)],
      ['garbage', () => overwrite(crlFile, 'garbage\n'), 'malformed', /clients\.crl is not a CRL/],
      ['cut off', () => overwrite(crlFile, crlPem.slice(0, -60)), 'malformed', /clients\.crl is PEM but holds no "BEGIN X509 CRL" block/],
    ];
    for (const [what, fault, reason, detail] of faults) {
      const mark = cli.stderr.length;
      fault();
      const rejected = await nextLine(cli, mark, (l) => l.event === 'crl_rejected' || l.event === 'crl_loaded');
      assert.equal(rejected.event, 'crl_rejected', `${what}: ${JSON.stringify(rejected)}`);
      assert.equal(rejected.source, crlFile);
      assert.equal(rejected.reason, reason, what);
      assert.match(String(rejected.detail), detail, what);
      assert.equal(rejected.keepsUsing, 'the previous CRL', what);
      assert.equal(rejected.level, 'warn');
      await unchanged();
    }

    pki.revoke(clients, later.certFile);
    const mark = cli.stderr.length;
    pki.crl(clients, crlFile);
    const loaded = await nextLine(cli, mark, (l) => (l.event === 'crl_loaded' && l.revoked === 2) || l.event === 'crl_rejected');
    assert.equal(loaded.event, 'crl_loaded', JSON.stringify(loaded));
    assert.deepEqual(await mtls(port, serverRoot, later), { status: '403', reason: 'revoked' }, 'the new CRL is in force');
    assert.deepEqual(await mtls(port, serverRoot, revoked), { status: '403', reason: 'revoked' });
    assert.deepEqual(await mtls(port, serverRoot, good), { status: '200', reason: null });
  });
});
