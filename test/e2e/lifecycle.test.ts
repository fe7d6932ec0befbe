import assert from 'node:assert/strict';
import { once } from 'node:events';
import { copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { after, describe, test } from 'node:test';
import { curl, h2Client, resolveTo, sClient, sClientRequest, tlsClient } from '../helpers/clients.js';
import { runCli, startCli, type CliProcess } from '../helpers/cli-process.js';
import { TestPki, type Ca } from '../helpers/pki.js';
import { tempDir, type Scope } from '../helpers/proxy.js';
import { startUpstream } from '../helpers/upstream.js';

const pki = new TestPki();
after(() => pki.cleanup());
let root: Ca;

/** Writes cert.pem/key.pem and portcullis.yaml into `dir` and starts the CLI on it. */
async function startWithFiles(t: Scope, dir: string, leafName: string, upstream = '"builtin:whoami"', accessLog = false): Promise<{ cli: CliProcess; port: number; file: string }> {
  root ??= pki.root('lifecycle-root');
  const leaf = pki.leaf(leafName, root, { dns: ['api.test'] });
  copyFileSync(leaf.chainFile, join(dir, 'cert.pem'));
  copyFileSync(leaf.keyFile, join(dir, 'key.pem'));
  const file = join(dir, 'portcullis.yaml');
  writeFileSync(file, accessLog ? configText(upstream).replace('log: { access: off }\n', '') : configText(upstream));
  const cli = startCli(t, ['start', '--config', file], dir);
  const port = Number((await cli.waitFor(/"https":"127\.0\.0\.1:(\d+)"/))[1]);
  return { cli, port, file };
}

function configText(upstream: string, extra = ''): string {
  return `listen: { https: "127.0.0.1:0" }
log: { access: off }
timeouts: { drain: 10s }
sites:
  - hosts: [api.test]
    certificates: [{ cert: cert.pem, key: key.pem }]
    routes: [{ path: /, upstream: ${upstream} }]${extra}
`;
}

/** Sends one HTTP/1.1 request on an open keep-alive connection and resolves with the status line. */
async function requestOn(socket: TLSSocket, path: string): Promise<string> {
  socket.write(`GET ${path} HTTP/1.1\r\nHost: api.test\r\n\r\n`);
  let text = '';
  for (;;) {
    const [chunk] = (await once(socket, 'data')) as [Buffer];
    text += chunk.toString();
    const length = /content-length: (\d+)/i.exec(text);
    const split = text.indexOf('\r\n\r\n');
    if (length && split >= 0 && text.length >= split + 4 + Number(length[1])) return text.split('\r\n')[0] as string;
  }
}

const status = async (port: number) =>
  (await curl([...resolveTo('api.test', port), '--cacert', root.certFile, '-o', '/dev/null', '-w', '%{http_code}', `https://api.test:${port}/`])).stdout;

describe('reload', () => {
  test('SIGHUP with a broken config keeps serving the old one and logs the precise error', async (t) => {
    const dir = tempDir(t);
    const { cli, port, file } = await startWithFiles(t, dir, 'broken-reload');
    assert.equal(await status(port), '200');
    const other = pki.leaf('other-key', root, { dns: ['api.test'], key: 'rsa' });
    writeFileSync(file, configText('"builtin:whoami"').replace('key: key.pem', `key: ${other.keyFile}`));
    cli.child.kill('SIGHUP');
    await cli.waitFor(/"event":"reload_refused".*sites\[0\]\.certificates\[0\]\.key: key does not match certificate/);
    assert.equal(await status(port), '200');

    const r = await runCli(['reload', '--config', file]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /reload refused, the previous config keeps serving: .*sites\[0\]\.certificates\[0\]\.key: key does not match/s);
    assert.equal(await status(port), '200');
  });

  test('SIGHUP with a new certificate serves it to new handshakes while an open connection continues and a stored session resumes', async (t) => {
    const dir = tempDir(t);
    const { cli, port } = await startWithFiles(t, dir, 'before-rotation');
    const open = tlsClient(port, 'api.test', root.certFile);
    await once(open, 'secureConnect');
    assert.equal(await requestOn(open, '/one'), 'HTTP/1.1 200 OK');
    const session = join(dir, 'session.pem');
    const first = await sClientRequest(port, 'api.test', ['-CAfile', root.certFile, '-sess_out', session]);
    assert.equal(first.status, '200');

    const next = pki.leaf('after-rotation', root, { dns: ['api.test'] });
    copyFileSync(next.chainFile, join(dir, 'cert.pem'));
    copyFileSync(next.keyFile, join(dir, 'key.pem'));
    cli.child.kill('SIGHUP');
    await cli.waitFor(/"event":"reloaded"/);

    const fresh = await sClient(port, ['-servername', 'api.test', '-CAfile', root.certFile, '-verify_return_error']);
    assert.equal(fresh.peerSubject, 'CN = after-rotation');
    assert.equal(await requestOn(open, '/two'), 'HTTP/1.1 200 OK', 'the open connection goes on');
    assert.equal(open.getPeerCertificate().subject.CN, 'before-rotation');
    open.destroy();
    const resumed = await sClientRequest(port, 'api.test', ['-CAfile', root.certFile, '-sess_in', session]);
    assert.equal(resumed.reused, true);
    assert.equal(resumed.status, '200');
  });

  test('portcullis reload applies a valid config and says so', async (t) => {
    const dir = tempDir(t);
    const { port, file } = await startWithFiles(t, dir, 'cli-reload');
    writeFileSync(file, configText('"builtin:whoami"').replace('routes: [{ path: /, upstream: "builtin:whoami" }]', 'routes: [{ path: /, upstream: "builtin:whoami" }, { path: /two/, upstream: "builtin:whoami" }]'));
    const r = await runCli(['reload', '--config', file]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /reloaded .*portcullis\.yaml: 1 site\(s\), 2 route\(s\)/);
    const who = await curl([...resolveTo('api.test', port), '--cacert', root.certFile, `https://api.test:${port}/two/x`]);
    assert.equal((JSON.parse(who.stdout) as { route: string }).route, '/two/');
  });

  test('reload applies new routes and a new redirect listener', async (t) => {
    const dir = tempDir(t);
    const { cli, port, file } = await startWithFiles(t, dir, 'routes-reload');
    writeFileSync(file, configText('"builtin:whoami"').replace('listen: { https: "127.0.0.1:0" }', `listen: { https: "127.0.0.1:${port}", http: "127.0.0.1:0" }`) .replace('routes: [{ path: /, upstream: "builtin:whoami" }]', 'routes: [{ path: /, upstream: "builtin:whoami" }, { path: /gone/, upstream: "http://127.0.0.1:9" }]'));
    cli.child.kill('SIGHUP');
    const httpPort = Number((await cli.waitFor(/"http":"127\.0\.0\.1:(\d+)"/))[1]);
    await cli.waitFor(/"event":"reloaded"/);
    const redirected = await curl(['-o', '/dev/null', '-w', '%{http_code} %{redirect_url}', '-H', 'Host: api.test', `http://127.0.0.1:${httpPort}/a`]);
    assert.equal(redirected.stdout, `308 https://api.test:${port}/a`);
    const gone = await curl([...resolveTo('api.test', port), '--cacert', root.certFile, '-o', '/dev/null', '-w', '%{http_code}', `https://api.test:${port}/gone/x`]);
    assert.equal(gone.stdout, '502');
  });
});

describe('drain', () => {
  test('a reload during a drain is refused: no listener opens again', async (t) => {
    const dir = tempDir(t);
    const upstream = await startUpstream(t);
    const arrived = once(upstream.server, 'request');
    const { cli, port } = await startWithFiles(t, dir, 'drain-reload', `"${upstream.origin}"`);
    const slow = curl([...resolveTo('api.test', port), '--cacert', root.certFile, '-w', '%{http_code}', `https://api.test:${port}/slow?ms=1500`]);
    await arrived;
    cli.child.kill('SIGTERM');
    await cli.waitFor(/"event":"stopping"/);
    cli.child.kill('SIGHUP');
    await cli.waitFor(/reload refused: the instance is stopping/);
    assert.equal((await slow).stdout, 'slow200');
    const [code] = (await once(cli.child, 'exit')) as [number];
    assert.equal(code, 0);
  });

  test('a request that outlasts timeouts.drain is cut at the deadline and the process still exits 0', async (t) => {
    const dir = tempDir(t);
    const upstream = await startUpstream(t);
    const arrived = once(upstream.server, 'request');
    const { cli, port, file } = await startWithFiles(t, dir, 'drain-deadline', `"${upstream.origin}"`);
    writeFileSync(file, configText(`"${upstream.origin}"`).replace('drain: 10s', 'drain: 1s'));
    cli.child.kill('SIGHUP');
    await cli.waitFor(/"event":"reloaded"/);
    const slow = curl([...resolveTo('api.test', port), '--cacert', root.certFile, `https://api.test:${port}/slow?ms=30000`]);
    await arrived;
    cli.child.kill('SIGTERM');
    const [code] = (await once(cli.child, 'exit')) as [number];
    assert.equal(code, 0);
    assert.match(cli.stderr, /"event":"drain_deadline"/);
    assert.notEqual((await slow).code, 0, 'the cut request failed on the client');
  });

  test('HTTP/2 clients get GOAWAY and their stream in progress finishes', async (t) => {
    const dir = tempDir(t);
    const upstream = await startUpstream(t);
    const arrived = once(upstream.server, 'request');
    const { cli, port } = await startWithFiles(t, dir, 'drain-h2', `"${upstream.origin}"`);
    const session = h2Client(t, port, 'api.test', root.certFile);
    const goaway = once(session, 'goaway');
    const req = session.request({ ':path': '/slow?ms=1500' });
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    await arrived;
    cli.child.kill('SIGTERM');
    await goaway;
    await once(req, 'end');
    assert.equal(body, 'slow');
    const [code] = (await once(cli.child, 'exit')) as [number];
    assert.equal(code, 0);
  });

  test('SIGTERM lets a slow in-flight request finish, refuses new connections, and exits 0', async (t) => {
    const dir = tempDir(t);
    const upstream = await startUpstream(t);
    const arrived = once(upstream.server, 'request');
    const { cli, port } = await startWithFiles(t, dir, 'drain', `"${upstream.origin}"`);
    const slow = curl([...resolveTo('api.test', port), '--cacert', root.certFile, '-w', '%{http_code}', `https://api.test:${port}/slow?ms=1500`]);
    await arrived;
    cli.child.kill('SIGTERM');
    await cli.waitFor(/"event":"stopping"/);
    const late = await curl([...resolveTo('api.test', port), '--cacert', root.certFile, `https://api.test:${port}/`]);
    assert.equal(late.code, 7, 'a new connection is refused once draining');
    const r = await slow;
    assert.equal(r.stdout, 'slow200');
    const [code] = (await once(cli.child, 'exit')) as [number];
    assert.equal(code, 0);
  });
});

describe('the access log of the CLI', () => {
  test('goes to stdout, one line per request, all written out when the process stops', async (t) => {
    const { cli, port } = await startWithFiles(t, tempDir(t), 'stdout-log', '"builtin:whoami"', true);
    for (let i = 0; i < 25; i++) assert.equal(await status(port), '200');
    cli.child.kill('SIGTERM');
    await once(cli.child, 'exit');
    const lines = cli.stdout.trim().split('\n').map((l) => JSON.parse(l) as { log: string; status: number });
    assert.equal(lines.length, 25);
    assert.ok(lines.every((l) => l.log === 'access' && l.status === 200));
    assert.doesNotMatch(cli.stdout, /"level"/, 'diagnostics stay on stderr');
  });
});
