import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { createLogger } from '../../src/observe/index.js';
import { RedisLink, redisState, type RedisSettings } from '../../src/state/index.js';
import { curl, resolveTo } from '../helpers/clients.js';
import { runCli } from '../helpers/cli-process.js';
import { startMember } from '../helpers/cluster.js';
import { freePort } from '../helpers/pebble.js';
import { TestPki } from '../helpers/pki.js';
import { tempDir } from '../helpers/proxy.js';
import { startRedis } from '../helpers/redis.js';

const pki = new TestPki();
after(() => pki.cleanup());
const root = pki.root('cluster-root');
const leaf = pki.leaf('api', root, { dns: ['api.test'] });
const quiet = createLogger('fatal');

const settingsFor = (port: number, extra: Partial<RedisSettings> = {}): RedisSettings => ({
  display: `redis://127.0.0.1:${port}/0`,
  host: '127.0.0.1',
  port,
  db: 0,
  username: null,
  password: null,
  tls: null,
  sentinels: [],
  cluster: 'test',
  ...extra,
});

describe('the redis state backend', () => {
  test('an instance refuses to start when Redis does not answer, naming where it looked and without the password', async (t) => {
    const dir = tempDir(t);
    const file = join(dir, 'portcullis.yaml');
    const port = await freePort();
    writeFileSync(
      file,
      `listen: { https: "127.0.0.1:0" }
state: { backend: redis, redis: "redis://portcullis:s3cret@127.0.0.1:${port}/0" }
sites:
  - hosts: [api.test]
    certificates: [{ cert: ${leaf.chainFile}, key: ${leaf.keyFile} }]
    routes: [{ path: /, upstream: "builtin:whoami" }]
`,
    );
    const r = await runCli(['start', '--config', file], 30_000);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /PCL_STATE_UNREACHABLE/);
    assert.match(r.stderr, new RegExp(`redis://portcullis@127\\.0\\.0\\.1:${port}/0 did not answer`));
    assert.doesNotMatch(r.stderr, /s3cret/);
  });

  test('an instance serves with an ACL user whose password comes from state.passwordFile', async (t) => {
    const redis = await startRedis(t, { acl: ['user default off', 'user portcullis on >pw-from-file ~pcl:* &pcl:* +@all'] });
    const dir = tempDir(t);
    writeFileSync(join(dir, 'redis-password'), 'pw-from-file\n');
    const member = await startMember(t, `redis://portcullis@127.0.0.1:${redis.port}/0`, leaf, { stateExtra: `passwordFile: ${join(dir, 'redis-password')}` });
    const r = await curl([...resolveTo('api.test', member.port), '--cacert', root.certFile, `https://api.test:${member.port}/`]);
    assert.equal(r.code, 0, r.stderr);
    const clients = await redis.cli('--user', 'portcullis', '--pass', 'pw-from-file', '--no-auth-warning', 'CLIENT', 'LIST');
    assert.match(clients.stdout, /name=portcullis:portcullis/, 'the instance is connected, under its cluster name');
  });

  test('rediss:// is verified against state.ca: the right CA connects, another refuses to start', async (t) => {
    const serverCert = pki.leaf('redis', root, { ips: ['127.0.0.1'], eku: 'serverAuth' });
    const redis = await startRedis(t, { tls: { cert: serverCert.certFile, key: serverCert.keyFile, ca: root.certFile } });
    const member = await startMember(t, redis.url, leaf, { stateExtra: `ca: ${root.certFile}` });
    const r = await curl([...resolveTo('api.test', member.port), '--cacert', root.certFile, `https://api.test:${member.port}/`]);
    assert.equal(r.code, 0, r.stderr);

    const other = pki.root('cluster-other-root');
    const dir = tempDir(t);
    const file = join(dir, 'portcullis.yaml');
    writeFileSync(
      file,
      `listen: { https: "127.0.0.1:0" }
state: { backend: redis, redis: "${redis.url}", ca: ${other.certFile} }
sites:
  - hosts: [api.test]
    certificates: [{ cert: ${leaf.chainFile}, key: ${leaf.keyFile} }]
    routes: [{ path: /, upstream: "builtin:whoami" }]
`,
    );
    const refused = await runCli(['start', '--config', file], 30_000);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /PCL_STATE_UNREACHABLE.*(certificate|self.signed|issuer)/i);
  });

  for (const server of ['redis', 'valkey'] as const) test(`a lock admits one holder at a time, and a holder overtaken after its lock expired cannot write (${server})`, async (t) => {
    const redis = await startRedis(t, { server });
    const [a, b] = await Promise.all([RedisLink.open(settingsFor(redis.port), quiet), RedisLink.open(settingsFor(redis.port), quiet)]);
    t.after(() => Promise.all([a.close(), b.close()]));
    const stateA = redisState(a);
    const stateB = redisState(b);

    // mutual exclusion: B's holder starts only after A's has finished
    const order: string[] = [];
    let releaseA!: () => void;
    const aHolds = new Promise<void>((resolve) => (releaseA = resolve));
    let aEntered!: () => void;
    const aIn = new Promise<void>((resolve) => (aEntered = resolve));
    const runA = stateA.withLock('order', async () => {
      order.push('a-in');
      aEntered();
      await aHolds;
      order.push('a-out');
    });
    await aIn;
    const runB = stateB.withLock('order', async () => {
      order.push('b-in');
    });
    releaseA();
    await Promise.all([runA, runB]);
    assert.deepEqual(order, ['a-in', 'a-out', 'b-in']);

    // fencing: A stalls, its lock expires (deleted here), B takes over; A's late write is refused
    let resumeA!: () => void;
    const stalled = new Promise<void>((resolve) => (resumeA = resolve));
    let aLeased!: () => void;
    const aHasLease = new Promise<void>((resolve) => (aLeased = resolve));
    const lateA = stateA.withLock('fenced', async (lease) => {
      aLeased();
      await stalled;
      return lease.write('value', 'from-a');
    });
    await aHasLease;
    await redis.cli('DEL', 'pcl:test:lock:fenced');
    const wroteB = await stateB.withLock('fenced', (lease) => lease.write('value', 'from-b'));
    resumeA();
    assert.equal(wroteB, true);
    assert.equal(await lateA, false, 'the overtaken holder is fenced off');
    assert.equal((await stateA.read('value'))?.toString(), 'from-b');
  });
});
