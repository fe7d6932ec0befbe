import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { Redis } from 'ioredis';
import { runCli } from '../helpers/cli-process.js';
import { linesOf, nextLine, type LogLine } from '../helpers/cli-logs.js';
import { curl, plaintextFrom, resolveTo } from '../helpers/clients.js';
import { startMember, type ClusterMember } from '../helpers/cluster.js';
import { TestPki, type Leaf } from '../helpers/pki.js';
import { suiteScope, type Scope } from '../helpers/proxy.js';
import { startRedis, startSentinel } from '../helpers/redis.js';
import { whenever, within } from '../helpers/wait.js';

/*
 * The deny list, API keys and detector blocks of a cluster of three
 * instances on one Redis (state.backend: redis): a change made on one
 * instance is in force on the others, through an outage of Redis and a
 * Sentinel failover.
 */

const pki = new TestPki();
after(() => pki.cleanup());
const root = pki.root('stores-root');
const server = pki.leaf('stores-server', root, { dns: ['api.test', 'keys.test'] });

/**
 * api.test requires a client certificate of `root` (the deny list's
 * business); keys.test requires an API key; the detector blocks after 3
 * failures and allows only 127.0.0.1, so a burst from 127.0.0.2 is counted.
 */
const siteExtra = `
    clientAuth: { mode: require, ca: [${root.certFile}] }
  - hosts: [keys.test]
    certificates: [{ cert: ${server.chainFile}, key: ${server.keyFile} }]
    routes: [{ path: /, upstream: "builtin:whoami", apiKeys: required }]`;
const body = 'detector: { threshold: 3, allow: ["127.0.0.1/32", "::1"] }';

function member(t: Scope, url: string, opts: { stateExtra?: string; workers?: number } = {}): Promise<ClusterMember> {
  return startMember(t, url, server, { siteExtra, body: `${body}\nworkers: ${opts.workers ?? 1}`, ...(opts.stateExtra ? { stateExtra: opts.stateExtra } : {}) });
}

const configOf = (m: ClusterMember) => join(m.dir, 'portcullis.yaml');

/** `portcullis …args --config <m's config>`, expected to succeed. */
async function cliOn(m: ClusterMember, ...args: string[]): Promise<{ stdout: string; stderr: string }> {
  const r = await runCli([...args, '--config', configOf(m)], 30_000);
  assert.equal(r.code, 0, `portcullis ${args.join(' ')}: ${r.stderr}`);
  return r;
}

/** The status of one request to api.test on `m` with the client certificate `client`. */
async function statusWith(m: ClusterMember, client: Leaf): Promise<string> {
  const r = await curl([...resolveTo('api.test', m.port), '--cacert', root.certFile, '--cert', client.certFile, '--key', client.keyFile, '-o', '/dev/null', '-w', '%{http_code}', `https://api.test:${m.port}/`]);
  return r.stdout;
}

/** The status and reason code of one request to keys.test on `m` with an API key. */
async function callWithKey(m: ClusterMember, key: string): Promise<{ status: string; reason: string | null }> {
  const r = await curl([...resolveTo('keys.test', m.port), '--cacert', root.certFile, '-H', `Authorization: Bearer ${key}`, '-w', '\n@@%{http_code}', `https://keys.test:${m.port}/`]);
  const [text, status = ''] = r.stdout.split('\n@@');
  return { status, reason: status === '200' ? null : ((JSON.parse(text as string) as { reason?: string }).reason ?? null) };
}

/** An open keep-alive connection to api.test on `m` with `client`, after one answered request. */
async function liveConnection(t: Scope, m: ClusterMember, client: Leaf): Promise<TLSSocket> {
  const socket = tlsConnect({ port: m.port, host: '127.0.0.1', servername: 'api.test', ca: readFileSync(root.certFile), cert: readFileSync(client.certFile), key: readFileSync(client.keyFile), ALPNProtocols: ['http/1.1'] });
  socket.on('error', () => {});
  t.after(() => socket.destroy());
  socket.write('GET / HTTP/1.1\r\nHost: api.test\r\n\r\n');
  const [first] = (await once(socket, 'data')) as [Buffer];
  assert.match(first.toString(), /^HTTP\/1\.1 200/);
  return socket;
}


/** Marks "from now on" in each member's log. */
const marks = (members: readonly ClusterMember[]) => members.map((m) => m.cli.stderr.length);

/** Waits on every member for a log line written since its mark. */
function onEach(members: readonly ClusterMember[], from: readonly number[], match: (l: LogLine) => boolean, timeoutMs = 30_000): Promise<LogLine[]> {
  return Promise.all(members.map((m, i) => nextLine(m.cli, from[i] as number, match, timeoutMs)));
}

const deniedWith = (n: number) => (l: LogLine) => l.event === 'deny_list_applied' && l.entries === n;

describe('a cluster of three instances shares its deny list, API keys and detector blocks', () => {
  const scope = suiteScope();
  let a: ClusterMember;
  let b: ClusterMember;
  let c: ClusterMember;

  before(async () => {
    const redis = await startRedis(scope);
    // one after the other: each start is bounded in time, on a machine the tests share
    a = await member(scope, redis.url);
    b = await member(scope, redis.url);
    // C serves with two workers, each with its own link to Redis
    c = await member(scope, redis.url, { workers: 2 });
  });

  test('a deny added on A closes a live connection on C, refuses new handshakes on B, and is in every local copy', async (t) => {
    const client = pki.leaf('stores-denied', root, { eku: 'clientAuth' });
    const bystander = pki.leaf('stores-bystander', root, { eku: 'clientAuth' });
    const live = await liveConnection(t, c, client);
    assert.equal(await statusWith(b, client), '200');
    const from = marks([b, c]);

    const closed = once(live, 'close');
    const added = await cliOn(a, 'deny', 'add', '--cert', client.certFile, '--note', 'laptop stolen');
    assert.match(added.stdout, /added to the deny list: sha256:/);
    assert.match(added.stdout, /deny list applied \(1 entry\).*in the cluster's Redis, every instance applies it/);
    await within(closed, 10_000, "C closing the denied client's live connection");
    await onEach([b, c], from, deniedWith(1));
    await nextLine(c.cli, from[1] as number, (l) => l.event === 'client_cert_rejected' && l.reason === 'revoked' && l.source === 'deny-list' && l.closedLiveConnection === true);

    assert.equal(await statusWith(b, client), '403', 'B refuses the certificate from now on');
    await nextLine(b.cli, from[0] as number, (l) => l.event === 'client_cert_rejected' && l.reason === 'revoked' && l.source === 'deny-list');
    assert.equal(await statusWith(b, bystander), '200', 'other clients are served');
    for (const m of [b, c]) assert.match((await cliOn(m, 'deny', 'list')).stdout, /sha256:.*\(laptop stolen\)/, "each instance's local copy holds the entry");
  });

  test('an API key created on A works on B, and once revoked on A is refused on B', async () => {
    const created = marks([b]);
    const made = await cliOn(a, 'keys', 'create', '--name', 'partner');
    const key = made.stdout.trim();
    assert.match(made.stderr, /in the cluster's Redis, every instance applies it/);
    await onEach([b], created, (l) => l.event === 'api_keys_applied' && l.keys === 1);
    assert.deepEqual(await callWithKey(b, key), { status: '200', reason: null });

    const revoking = marks([b, c]);
    await cliOn(a, 'keys', 'revoke', key.slice(4, 16));
    await onEach([b, c], revoking, (l) => l.event === 'api_keys_applied');
    assert.deepEqual(await callWithKey(b, key), { status: '401', reason: 'revoked_api_key' });
    assert.deepEqual(await callWithKey(c, key), { status: '401', reason: 'revoked_api_key' });
    assert.match((await cliOn(b, 'keys', 'list')).stdout, /partner {2}revoked /, "B's local copy shows the revocation");
  });

  test('a burst of failures against A blocks the source on all three, which keep serving everyone else', async () => {
    const from = marks([a, b, c]);
    for (let i = 0; i < 3; i++) assert.match(await plaintextFrom('127.0.0.2', a.port), /^HTTP\/1\.1 400 /, 'refused but answered until the threshold');
    const [blocked] = await onEach([a], [from[0] as number], (l) => l.event === 'source_blocked');
    assert.equal(blocked?.address, '127.0.0.2');
    const heard = (l: LogLine) => l.event === 'cluster_block_applied' && l.address === '127.0.0.2';
    const [onB] = await onEach([b], from.slice(1, 2), heard);
    const onC = await whenever(c.cli.child.stderr as Readable, 'data', () => {
      const lines = linesOf(c.cli, from[2]).filter(heard);
      return lines.length >= 2 ? lines : undefined;
    }, { what: "the block applied by both of C's workers" });
    assert.notEqual(onC[0]?.pid, onC[1]?.pid);
    for (const l of [onB, ...onC]) assert.equal(l?.until, blocked?.until, 'the block ends when A decided');
    for (const m of [a, b, c, c, c]) {
      assert.equal(await plaintextFrom('127.0.0.2', m.port), '', "closed at accept on every instance (by either of C's workers)");
      assert.match(await plaintextFrom('127.0.0.3', m.port), /^HTTP\/1\.1 400 /, 'another source is not blocked');
    }
  });
});

describe('the shared stores through an outage of Redis', () => {
  test('instances keep serving and enforcing during the outage; a deny and a block made meanwhile reach all once Redis is back', async (t) => {
    const redis = await startRedis(t);
    const a = await member(t, redis.url);
    const b = await member(t, redis.url);
    const c = await member(t, redis.url);
    const members = [a, b, c];
    const early = pki.leaf('outage-early', root, { eku: 'clientAuth' });
    const late = pki.leaf('outage-late', root, { eku: 'clientAuth' });
    const other = pki.leaf('outage-other', root, { eku: 'clientAuth' });
    let from = marks(members);
    await cliOn(a, 'deny', 'add', '--cert', early.certFile);
    await onEach([b, c], from.slice(1), deniedWith(1));

    from = marks(members);
    await redis.kill();
    await onEach(members, from, (l) => l.event === 'state_backend_lost');
    for (const m of members) {
      assert.equal(await statusWith(m, other), '200', 'serving on the last known state');
      assert.equal(await statusWith(m, early), '403', 'the deny list in force before the outage is enforced');
    }
    const added = await cliOn(a, 'deny', 'add', '--cert', late.certFile);
    assert.match(added.stdout, /deny list applied \(2 entries\).*unreachable: 1 change\(s\) queued, written to it once it is back/);
    await nextLine(a.cli, from[0] as number, (l) => l.event === 'cluster_change_queued' && l.store === 'deny list');
    assert.equal(await statusWith(a, late), '403', 'A enforces the new entry at once');
    assert.equal(await statusWith(b, late), '200', 'B cannot know of it yet');
    const removal = await runCli(['deny', 'remove', '--cert', early.certFile, '--config', configOf(b)], 30_000);
    assert.equal(removal.code, 1);
    assert.match(removal.stderr, /PCL_STATE_UNAVAILABLE: .* NOT removed: the cluster's Redis at redis:\/\/127\.0\.0\.1:\d+\/0 cannot be reached/);
    assert.equal(await statusWith(b, early), '403', 'a removal is not made without Redis');
    for (let i = 0; i < 3; i++) await plaintextFrom('127.0.0.4', a.port);
    await nextLine(a.cli, from[0] as number, (l) => l.event === 'source_blocked' && l.address === '127.0.0.4');
    assert.equal(await plaintextFrom('127.0.0.4', a.port), '', 'A enforces its block during the outage');

    from = marks(members);
    // the same port, and nothing kept: the restarted Redis is empty, the instances' local copies fill it
    await startRedis(t, { port: redis.port });
    await onEach(members, from, (l) => l.event === 'state_backend_recovered');
    await nextLine(a.cli, from[0] as number, (l) => l.event === 'cluster_changes_written' && l.store === 'deny list', 30_000);
    await onEach([b, c], from.slice(1), deniedWith(2));
    await onEach([b, c], from.slice(1), (l) => l.event === 'cluster_block_applied' && l.address === '127.0.0.4');
    for (const m of members) {
      assert.equal(await statusWith(m, late), '403', 'the deny made during the outage is in force everywhere');
      assert.equal(await statusWith(m, early), '403', 'and the one made before it too');
    }
    assert.equal((await redis.cli('HLEN', 'pcl:portcullis:deny-list')).stdout.trim(), '2', 'Redis holds both again');
    assert.equal(await plaintextFrom('127.0.0.4', c.port), '', 'the block A decided during the outage is enforced by C');
  });
});

describe('the shared stores through a Sentinel failover', () => {
  test('instances follow the new master: state written before the failover is there, and a new deny on A reaches B', async (t) => {
    const master = await startRedis(t);
    const replica = await startRedis(t, { extra: [`replicaof 127.0.0.1 ${master.port}`] });
    const sentinel = await startSentinel(t, 'mymaster', master.port);
    const url = 'redis://mymaster/0';
    const stateExtra = `sentinels: ["127.0.0.1:${sentinel.port}"]`;
    const a = await member(t, url, { stateExtra });
    const b = await member(t, url, { stateExtra });
    const first = pki.leaf('failover-first', root, { eku: 'clientAuth' });
    const second = pki.leaf('failover-second', root, { eku: 'clientAuth' });
    let from = marks([a, b]);
    await cliOn(a, 'deny', 'add', '--cert', first.certFile);
    await onEach([b], [from[1] as number], deniedWith(1));

    const watcher = new Redis({ host: '127.0.0.1', port: sentinel.port, lazyConnect: true, retryStrategy: () => null });
    watcher.on('error', () => {});
    t.after(() => watcher.disconnect());
    await watcher.connect();
    const switched = new Promise<string>((resolve) => watcher.on('message', (_channel: string, message: string) => resolve(message)));
    await watcher.subscribe('+switch-master');
    from = marks([a, b]);
    await master.kill();
    const announcement = await within(switched, 30_000, "the sentinel's +switch-master");
    assert.match(announcement, new RegExp(`^mymaster 127\\.0\\.0\\.1 ${master.port} 127\\.0\\.0\\.1 ${replica.port}$`));
    await onEach([a, b], from, (l) => l.event === 'state_backend_recovered');

    from = marks([a, b]);
    const added = await cliOn(a, 'deny', 'add', '--cert', second.certFile);
    assert.match(added.stdout, /deny list applied \(2 entries\).*in the cluster's Redis/);
    await onEach([b], [from[1] as number], deniedWith(2));
    assert.equal(await statusWith(b, first), '403', 'state written before the failover is still in force');
    assert.equal(await statusWith(b, second), '403', 'a deny made after it reaches B');
    assert.equal((await replica.cli('HLEN', 'pcl:portcullis:deny-list')).stdout.trim(), '2', 'the new master holds both');
  });
});
