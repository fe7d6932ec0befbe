import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { runCli, startCli, type CliProcess } from '../helpers/cli-process.js';
import { curl, resolveTo, run, type RunResult } from '../helpers/clients.js';
import { TestPki, type Ca, type Leaf } from '../helpers/pki.js';
import type { Scope } from '../helpers/proxy.js';
import { within } from '../helpers/wait.js';

/**
 * dataDir on a real tmpfs that the test fills to ENOSPC or remounts
 * read-only: what `portcullis deny` and `portcullis keys` do when the state
 * files cannot be written, against a real instance and real TLS peers.
 */

const pki = new TestPki();
after(() => pki.cleanup());

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const fingerprintOf = (leaf: Leaf) => `sha256:${new X509Certificate(leaf.certPem).fingerprint256}`;

interface StateDir {
  /** The folder holding the config; not on the tmpfs. */
  readonly home: string;
  /** The tmpfs mount: the instance's dataDir. */
  readonly dataDir: string;
  readonly config: string;
  /** Fills the filesystem: every further write gets ENOSPC. */
  fill(): void;
  /** Frees what fill() took. */
  free(): void;
  remount(mode: 'ro' | 'rw'): Promise<void>;
  /** Temp files left in dataDir. */
  leftovers(): string[];
  /** The instance, once started: killed before the filesystem is unmounted. */
  instance: CliProcess | null;
}

async function must(cmd: string, args: string[]): Promise<void> {
  const r = await run(cmd, args);
  assert.equal(r.code, 0, `${cmd} ${args.join(' ')}: ${r.stderr}`);
}

/**
 * A 1 MiB tmpfs as dataDir, and a config using it. One clean-up kills the
 * instance first (it holds the control socket), then unmounts, whatever the
 * test did.
 */
async function stateDir(t: Scope, configBody: string): Promise<StateDir> {
  const home = mkdtempSync(join(tmpdir(), 'pcl-state-'));
  const dataDir = join(home, 'data');
  mkdirSync(dataDir);
  const filler = join(dataDir, 'filler');
  const dir: StateDir = {
    home,
    dataDir,
    config: join(home, 'portcullis.yaml'),
    fill() {
      const fd = openSync(filler, 'a');
      const chunk = Buffer.alloc(64 * 1024);
      try {
        for (;;) writeSync(fd, chunk);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
      } finally {
        closeSync(fd);
      }
      // the last partial chunk may have left less than a page: that is still full for a new file
    },
    free: () => unlinkSync(filler),
    remount: (mode) => must('mount', ['-o', `remount,${mode}`, dataDir]),
    leftovers: () => readdirSync(dataDir).filter((f) => f.endsWith('.tmp')),
    instance: null,
  };
  t.after(async () => {
    const child = dir.instance?.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
    }
    const umount = await run('umount', [dataDir]);
    if (umount.code !== 0) await run('umount', ['-l', dataDir]);
    rmSync(home, { recursive: true, force: true });
  });
  await must('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'tmpfs', dataDir]);
  writeFileSync(dir.config, `dataDir: ${dataDir}\nlog: { access: off }\n${configBody}`);
  return dir;
}

/** Starts `portcullis start` on the state dir and resolves with its HTTPS port. */
async function startInstance(t: Scope, dir: StateDir, workers = 1): Promise<{ cli: CliProcess; port: number }> {
  const cli = startCli(t, ['start', '--config', dir.config], dir.home);
  dir.instance = cli;
  const port = Number((await cli.waitFor(/serving HTTPS on 127\.0\.0\.1:(\d+)/))[1]);
  if (workers > 1) await cli.waitFor(new RegExp(`with ${workers} workers`));
  return { cli, port };
}

function portcullis(dir: StateDir, ...args: string[]): Promise<RunResult> {
  return runCli([...args, '--config', dir.config]);
}

/** Nothing like "unexpected error" and a stack trace. */
function assertNoStack(r: RunResult): void {
  assert.doesNotMatch(r.stderr, /unexpected error|^\s+at /m, r.stderr);
}

const countOf = (cli: CliProcess, event: string) => (cli.stdout + cli.stderr).split('\n').filter((l) => l.includes(`"event":"${event}"`)).length;

/** One mutual-TLS site on 127.0.0.1:0 answering builtin:whoami, and a route taking API keys. */
function siteConfig(root: Ca, server: Leaf, workers: number): string {
  return `listen: { https: "127.0.0.1:0" }
workers: ${workers}
sites:
  - hosts: [api.test]
    certificates: [{ cert: ${server.chainFile}, key: ${server.keyFile} }]
    clientAuth: { mode: optional, ca: [${root.certFile}] }
    routes:
      - { path: /keys/, upstream: "builtin:whoami", clientCert: optional, apiKeys: required }
      - { path: /, upstream: "builtin:whoami", clientCert: required }
`;
}

/** The status and reason of one request with curl (client certificate and/or API key). */
async function call(port: number, root: Ca, path: string, opts: { cert?: Leaf; key?: string } = {}): Promise<{ status: number; reason: string | null }> {
  const r = await curl([
    ...resolveTo('api.test', port),
    '--cacert', root.certFile,
    ...(opts.cert ? ['--cert', opts.cert.certFile, '--key', opts.cert.keyFile] : []),
    ...(opts.key ? ['-H', `Authorization: Bearer ${opts.key}`] : []),
    '-w', '\n@@%{http_code}',
    `https://api.test:${port}${path}`,
  ]);
  const [body = '', status = ''] = r.stdout.split('\n@@');
  if (!/^\d{3}$/.test(status)) return { status: 0, reason: `curl exit ${r.code}: ${r.stderr.trim()}` };
  return { status: Number(status), reason: Number(status) === 200 ? null : (JSON.parse(body) as { reason: string }).reason };
}

/** A live keep-alive HTTP/1.1 connection with a client certificate through `openssl s_client`, verifying the server; resolves once its first answer arrived. */
async function openSClient(t: Scope, port: number, root: Ca, client: Leaf): Promise<{ child: ChildProcess; closed: Promise<number | null>; firstStatus: string }> {
  const child = spawn('openssl', ['s_client', '-quiet', '-connect', `127.0.0.1:${port}`, '-servername', 'api.test', '-alpn', 'http/1.1', '-CAfile', root.certFile, '-verify_return_error', '-cert', client.certFile, '-key', client.keyFile], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const closed = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let text = '';
  const firstStatus = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`s_client: no answer within 15 s: ${text}`)), 15_000);
    child.stdout.on('data', (d: Buffer) => {
      text += d.toString();
      const status = /^HTTP\/1\.1 (\d{3})/m.exec(text)?.[1];
      if (status && /\r\n\r\n[\s\S]*\}/.test(text)) {
        clearTimeout(timer);
        resolve(status);
      }
    });
    child.once('exit', (code) => reject(new Error(`s_client exited (${code}) before an answer: ${text}`)));
    // stdin stays open: the connection lives until the server closes it
    child.stdin.write('GET /who/ HTTP/1.1\r\nHost: api.test\r\n\r\n');
  });
  return { child, closed, firstStatus };
}

describe('deny add on a full dataDir', () => {
  for (const workers of [1, 2]) {
    test(`applies the block to the running instance at once (workers: ${workers}), says it is not persisted, and the instance saves it once space is freed`, async (t) => {
      const root = pki.root(`sw-deny-root-${workers}`);
      const server = pki.leaf(`sw-deny-server-${workers}`, root, { dns: ['api.test'] });
      const stolen = pki.leaf(`sw-deny-stolen-${workers}`, root, { eku: 'clientAuth' });
      const bystander = pki.leaf(`sw-deny-bystander-${workers}`, root, { eku: 'clientAuth' });
      const another = pki.leaf(`sw-deny-another-${workers}`, root, { eku: 'clientAuth' });
      const dir = await stateDir(t, siteConfig(root, server, workers));
      const { cli, port } = await startInstance(t, dir, workers);
      const live = await openSClient(t, port, root, stolen);
      assert.equal(live.firstStatus, '200');

      dir.fill();
      const added = await portcullis(dir, 'deny', 'add', '--cert', stolen.certFile, '--note', 'laptop stolen');
      assertNoStack(added);
      assert.equal(added.code, 3, added.stderr);
      const listFile = join(dir.dataDir, 'deny-list.json');
      assert.match(
        added.stderr,
        new RegExp(`^portcullis: PCL_STATE_NOT_PERSISTED: NOT persisted: deny list entry ${escape(fingerprintOf(stolen))}: cannot write ${escape(listFile)}: the filesystem holding ${escape(dir.dataDir)} is full \\(ENOSPC\\)\\.$`, 'm'),
      );
      const closedText = workers === 1 ? '1 open connection\\(s\\) closed' : `applied by ${workers} workers, 1 open connection\\(s\\) closed`;
      assert.match(added.stderr, new RegExp(`^Applied to the running instance only: deny list applied \\(1 entry\\): ${closedText}`, 'm'));
      assert.match(added.stderr, /^The instance saves it by itself once the file can be written \(free space on that filesystem\): it retries every 30 s and at every control request \(e\.g\. portcullis reload\)\. It is lost if the instance stops before then\.$/m);
      assert.equal(added.stdout, '', 'stdout does not say "added": it was not saved');
      assert.deepEqual(dir.leftovers(), [], 'no temp file is left behind');
      assert.equal(existsSync(listFile), false, 'nothing was saved');

      // the live connection that presented the certificate is closed, new ones are refused
      await within(live.closed, 10_000, 'the s_client connection was not closed');
      await cli.waitFor(/"event":"client_cert_rejected".*"reason":"revoked".*"source":"deny-list"/);
      assert.deepEqual(await call(port, root, '/who/', { cert: stolen }), { status: 403, reason: 'revoked' });
      assert.deepEqual(await call(port, root, '/who/', { cert: bystander }), { status: 200, reason: null });
      await cli.waitFor(/"level":"warn"[^\n]*"event":"state_not_persisted"[^\n]*"errno":"ENOSPC"/);

      // a second block while still full: the instance re-reads the file (empty) and keeps the first one on top
      const second = await portcullis(dir, 'deny', 'add', '--cert', another.certFile);
      assert.equal(second.code, 3, second.stderr);
      assert.match(second.stderr, /deny list applied \(2 entries\)/);
      assert.deepEqual(await call(port, root, '/who/', { cert: stolen }), { status: 403, reason: 'revoked' });
      assert.deepEqual(dir.leftovers(), []);

      // space is back: the next control request (any command) has the instance save both
      dir.free();
      const reload = await portcullis(dir, 'reload');
      assert.equal(reload.code, 0, reload.stderr);
      await cli.waitFor(/"event":"state_persisted"/);
      const saved = JSON.parse(readFileSync(listFile, 'utf8')) as { entries: { fingerprint: string; note: string | null }[] };
      assert.deepEqual(
        saved.entries.map((e) => [e.fingerprint, e.note]),
        [
          [fingerprintOf(stolen), 'laptop stolen'],
          [fingerprintOf(another), null],
        ],
      );
      const listed = await portcullis(dir, 'deny', 'list');
      assert.match(listed.stdout, new RegExp(`${escape(fingerprintOf(stolen))}.*\\(laptop stolen\\)`));
      assert.deepEqual(await call(port, root, '/who/', { cert: stolen }), { status: 403, reason: 'revoked' });
    });
  }
});

describe('keys revoke on a full dataDir', () => {
  test('refuses the key at once (401 revoked_api_key), and a later command that rewrites the store neither readmits it nor loses the revocation', async (t) => {
    const root = pki.root('sw-keys-root');
    const server = pki.leaf('sw-keys-server', root, { dns: ['api.test'] });
    const dir = await stateDir(t, siteConfig(root, server, 1));
    const { cli, port } = await startInstance(t, dir);
    const created = await portcullis(dir, 'keys', 'create', '--name', 'victim');
    assert.equal(created.code, 0, created.stderr);
    const victim = created.stdout.trim();
    const id = victim.slice(4, 16);
    assert.deepEqual(await call(port, root, '/keys/x', { key: victim }), { status: 200, reason: null });

    dir.fill();
    const revoked = await portcullis(dir, 'keys', 'revoke', id);
    assertNoStack(revoked);
    assert.equal(revoked.code, 3, revoked.stderr);
    const store = join(dir.dataDir, 'api-keys.json');
    assert.match(revoked.stderr, new RegExp(`PCL_STATE_NOT_PERSISTED: NOT persisted: revocation of API key ${id} \\(victim\\): cannot write ${escape(store)}: the filesystem holding ${escape(dir.dataDir)} is full \\(ENOSPC\\)`));
    assert.match(revoked.stderr, /Applied to the running instance only: API keys applied \(1 entry\): in force for every request from now on/);
    assert.equal(revoked.stdout, '');
    assert.deepEqual(dir.leftovers(), []);
    assert.deepEqual(await call(port, root, '/keys/x', { key: victim }), { status: 401, reason: 'revoked_api_key' });
    const onDisk = () => (JSON.parse(readFileSync(store, 'utf8')) as { keys: { id: string; revokedAt: string | null }[] }).keys;
    assert.equal(onDisk().find((k) => k.id === id)?.revokedAt, null, 'the file still holds the key unrevoked');
    await cli.waitFor(/"event":"state_not_persisted"[^\n]*"changes":\["revoke API key [0-9a-f]{12}"\]/);

    // space is back; keys create rewrites the store from the file, which does not hold the revocation
    dir.free();
    const later = await portcullis(dir, 'keys', 'create', '--name', 'later');
    assert.equal(later.code, 0, later.stderr);
    assert.deepEqual(await call(port, root, '/keys/x', { key: later.stdout.trim() }), { status: 200, reason: null });
    assert.deepEqual(await call(port, root, '/keys/x', { key: victim }), { status: 401, reason: 'revoked_api_key' }, 'the revocation survives the re-read');
    await cli.waitFor(new RegExp(`"event":"state_persisted"[^\\n]*"changes":\\["revoke API key ${id}"\\]`));
    assert.notEqual(onDisk().find((k) => k.id === id)?.revokedAt, null, 'the instance saved the revocation');
    assert.ok(onDisk().some((k) => k.id === later.stdout.trim().slice(4, 16)), 'and kept the new key');
  });
});

describe('loosening and credential-creating commands on an unwritable dataDir', () => {
  test('deny add with no running instance applies nothing and says so', async (t) => {
    const root = pki.root('sw-alone-root');
    const server = pki.leaf('sw-alone-server', root, { dns: ['api.test'] });
    const client = pki.leaf('sw-alone-client', root, { eku: 'clientAuth' });
    const dir = await stateDir(t, siteConfig(root, server, 1));
    dir.fill();
    const added = await portcullis(dir, 'deny', 'add', '--cert', client.certFile);
    assertNoStack(added);
    assert.equal(added.code, 1, added.stderr);
    assert.match(added.stderr, /^portcullis: PCL_STATE_WRITE_FAILED: cannot write \S+deny-list\.json: the filesystem holding \S+ is full \(ENOSPC\); free space on that filesystem, then try again\. Nothing was applied \(deny list entry sha256:[0-9A-F:]{95}\): no running instance answers on \S+control\.sock\.$/m);
    assert.deepEqual(dir.leftovers(), []);
  });

  for (const condition of ['full', 'read-only'] as const) {
    test(`keys create, keys rotate and deny remove on a ${condition} dataDir fail with PCL_STATE_WRITE_FAILED and change nothing, on disk or in the running instance`, async (t) => {
      const root = pki.root(`sw-loosen-root-${condition}`);
      const server = pki.leaf(`sw-loosen-server-${condition}`, root, { dns: ['api.test'] });
      const blocked = pki.leaf(`sw-loosen-blocked-${condition}`, root, { eku: 'clientAuth' });
      const dir = await stateDir(t, siteConfig(root, server, 1));
      const { cli, port } = await startInstance(t, dir);
      const created = await portcullis(dir, 'keys', 'create', '--name', 'current');
      assert.equal(created.code, 0, created.stderr);
      const current = created.stdout.trim();
      const denied = await portcullis(dir, 'deny', 'add', '--cert', blocked.certFile);
      assert.equal(denied.code, 0, denied.stderr);
      assert.deepEqual(await call(port, root, '/who/', { cert: blocked }), { status: 403, reason: 'revoked' });
      const files = () => ['api-keys.json', 'deny-list.json'].map((f) => readFileSync(join(dir.dataDir, f), 'utf8'));
      const before = files();
      const applied = { deny: countOf(cli, 'deny_list_applied'), keys: countOf(cli, 'api_keys_applied') };

      if (condition === 'full') dir.fill();
      else await dir.remount('ro');
      const problem = condition === 'full' ? `the filesystem holding ${escape(dir.dataDir)} is full \\(ENOSPC\\); free space on that filesystem` : `${escape(dir.dataDir)} is on a read-only filesystem \\(EROFS\\); remount it read-write, or point dataDir at a writable folder`;
      const refused = (r: RunResult, file: string) => {
        assertNoStack(r);
        assert.equal(r.code, 1, r.stderr);
        assert.match(r.stderr, new RegExp(`^portcullis: PCL_STATE_WRITE_FAILED: cannot write ${escape(join(dir.dataDir, file))}: ${problem}, then try again$`, 'm'));
      };

      const create = await portcullis(dir, 'keys', 'create', '--name', 'new');
      refused(create, 'api-keys.json');
      assert.equal(create.stdout, '', 'no key is printed: it would not exist');
      const rotate = await portcullis(dir, 'keys', 'rotate', current.slice(4, 16));
      refused(rotate, 'api-keys.json');
      assert.equal(rotate.stdout, '');
      const remove = await portcullis(dir, 'deny', 'remove', '--cert', blocked.certFile);
      refused(remove, 'deny-list.json');

      assert.deepEqual(dir.leftovers(), [], 'no temp file is left behind');
      assert.deepEqual(files(), before, 'the files are as they were');
      assert.deepEqual(await call(port, root, '/who/', { cert: blocked }), { status: 403, reason: 'revoked' }, 'the removed entry is still refused');
      assert.deepEqual(await call(port, root, '/keys/x', { key: current }), { status: 200, reason: null }, 'the key that was to be rotated works as before');
      // a control request, answered after anything the instance would have applied: it applied nothing
      const reload = await portcullis(dir, 'reload');
      assert.equal(reload.code, 0, reload.stderr);
      assert.deepEqual({ deny: countOf(cli, 'deny_list_applied'), keys: countOf(cli, 'api_keys_applied') }, applied, 'the running instance was told nothing');
      const listed = await portcullis(dir, 'keys', 'list');
      assert.doesNotMatch(listed.stdout, /rotated to/);
      assert.equal(listed.stdout.trim().split('\n').length, 1);
    });
  }
});
