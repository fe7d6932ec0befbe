import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import type { FleetFlag, InstanceRecord } from '../../src/state/index.js';
import { runCli } from '../helpers/cli-process.js';
import { startInstance } from '../helpers/cli-logs.js';
import { startMember, type ClusterMember } from '../helpers/cluster.js';
import { TestPki } from '../helpers/pki.js';
import { tempDir } from '../helpers/proxy.js';
import { startRedis } from '../helpers/redis.js';
import { waitFor } from '../helpers/wait.js';

const pki = new TestPki();
after(() => pki.cleanup());
const root = pki.root('fleet-root');
const leaf = pki.leaf('api', root, { dns: ['api.test'] });
const serial = new X509Certificate(readFileSync(leaf.certFile)).serialNumber.toUpperCase();

type FleetJson = { cluster: string; agreed: boolean; instances: (InstanceRecord & { flags: FleetFlag[] })[] };

const configOf = (m: ClusterMember) => join(m.dir, 'portcullis.yaml');

/** `portcullis status --fleet --format json` with a member's config: its exit code and the fleet it printed. */
async function fleetStatus(m: ClusterMember): Promise<{ code: number | null; fleet: FleetJson; stderr: string }> {
  const r = await runCli(['status', '--fleet', '--format', 'json', '--config', configOf(m)], 30_000);
  assert.ok(r.stdout.startsWith('{'), `status --fleet printed JSON (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  return { code: r.code, fleet: JSON.parse(r.stdout) as FleetJson, stderr: r.stderr };
}

/** Polls status --fleet (each run a separate process, bounded) until `check` accepts what it printed. */
function fleetWhen(m: ClusterMember, what: string, check: (s: Awaited<ReturnType<typeof fleetStatus>>) => boolean, timeoutMs = 20_000) {
  return waitFor(
    async () => {
      const s = await fleetStatus(m);
      return check(s) ? s : undefined;
    },
    { what, timeoutMs, intervalMs: 200 },
  );
}

describe('fleet status', () => {
  test('three instances register; status --fleet lists them agreeing, then flags the one whose config changed', async (t) => {
    const redis = await startRedis(t);
    const members = await Promise.all([0, 1, 2].map(() => startMember(t, redis.url, leaf)));

    const agreed = await fleetStatus(members[0] as ClusterMember);
    assert.equal(agreed.code, 0, agreed.stderr);
    assert.equal(agreed.fleet.cluster, 'portcullis');
    assert.equal(agreed.fleet.agreed, true);
    const instances = agreed.fleet.instances;
    assert.deepEqual(instances.map((i) => Number(i.listeners.https.split(':')[1])).sort(), members.map((m) => m.port).sort(), 'every member, by where it serves');
    assert.equal(new Set(instances.map((i) => i.id)).size, 3, 'three distinct ids');
    assert.equal(new Set(instances.map((i) => i.configDigest)).size, 1, 'one config');
    for (const i of instances) {
      assert.equal(i.generation, 1);
      assert.deepEqual(i.flags, []);
      assert.deepEqual(i.certificates.map((c) => [c.site, c.serial]), [['api.test', serial]]);
      assert.equal(i.version, JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version);
      assert.equal(i.node, process.version);
      assert.equal(i.lastReload, null);
    }

    const table = await runCli(['status', '--fleet', '--config', configOf(members[1] as ClusterMember)], 30_000);
    assert.equal(table.code, 0, table.stderr);
    for (const i of instances) assert.ok(table.stdout.includes(i.id), `the table lists ${i.id}:\n${table.stdout}`);
    assert.match(table.stdout, /3 instance\(s\) of cluster "portcullis" serve config [0-9a-f]{12} and the same certificates/);

    // one member gets another route: edited and reloaded through its dataDir's control socket
    const changed = members[2] as ClusterMember;
    const file = configOf(changed);
    writeFileSync(file, readFileSync(file, 'utf8').replace('routes: [{ path: /, upstream: "builtin:whoami" }]', 'routes: [{ path: /, upstream: "builtin:whoami" }, { path: /v2, upstream: "builtin:whoami" }]'));
    const reload = await runCli(['reload', '--config', file], 30_000);
    assert.equal(reload.code, 0, reload.stderr);

    const split = await fleetWhen(members[0] as ClusterMember, 'the changed instance flagged', (s) => s.fleet.instances.some((i) => i.flags.length > 0));
    assert.equal(split.code, 4, 'status --fleet exits 4 when an instance differs');
    assert.equal(split.fleet.agreed, false);
    const flagged = split.fleet.instances.filter((i) => i.flags.length > 0);
    assert.equal(flagged.length, 1);
    const odd = flagged[0] as FleetJson['instances'][number];
    assert.equal(Number(odd.listeners.https.split(':')[1]), changed.port, 'the flagged one is the reloaded one');
    assert.deepEqual(odd.flags.map((f) => f.kind), ['config'], 'same certificates, another config');
    assert.equal(odd.generation, 2);
    assert.equal(odd.lastReload?.ok, true);
    assert.equal(odd.lastReload?.trigger, 'control socket');

    const text = await runCli(['status', '--fleet', '--config', configOf(members[0] as ClusterMember)], 30_000);
    assert.equal(text.code, 4);
    assert.match(text.stdout, new RegExp(`! ${odd.id.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: serves config sha256:[0-9a-f]{64} \\(generation 2\\) where 2 instance\\(s\\) serve`));
    assert.match(text.stdout, /1 of 3 instance\(s\) of cluster "portcullis" differ/);

    // a reload that is refused is reported, and the instance keeps the config it serves
    writeFileSync(file, `${readFileSync(file, 'utf8')}\nnotAKey: 1\n`);
    const refused = await runCli(['reload', '--config', file], 30_000);
    assert.equal(refused.code, 2);
    const afterRefusal = await fleetWhen(members[0] as ClusterMember, 'the refused reload reported', (s) => s.fleet.instances.some((i) => i.lastReload?.ok === false));
    const same = afterRefusal.fleet.instances.find((i) => i.id === odd.id) as FleetJson['instances'][number];
    assert.equal(same.generation, 2, 'still the generation it served');
    assert.equal(same.configDigest, odd.configDigest);
    assert.equal(same.lastReload?.code, 'PCL_CONFIG_INVALID');
  });

  test('status describes the local instance over its control socket, as it registered itself', async (t) => {
    const redis = await startRedis(t);
    const member = await startMember(t, redis.url, leaf, { stateExtra: 'cluster: local' });
    const json = await runCli(['status', '--format', 'json', '--config', configOf(member)], 30_000);
    assert.equal(json.code, 0, json.stderr);
    const self = JSON.parse(json.stdout) as InstanceRecord;
    assert.equal(self.cluster, 'local');
    assert.equal(self.pid, member.cli.pid);
    const { fleet } = await fleetStatus(member);
    assert.deepEqual(fleet.instances.map((i) => i.id), [self.id]);
    const text = await runCli(['status', '--config', configOf(member)], 30_000);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, new RegExp(`instance +${self.id}`));
    assert.match(text.stdout, new RegExp(`api\\.test +serial ${serial}`));
  });

  test('a stopped instance leaves the fleet at once; a killed one once its record expires', async (t) => {
    const redis = await startRedis(t);
    const members = await Promise.all([0, 1, 2].map(() => startMember(t, redis.url, leaf)));
    const [a, b, c] = members as [ClusterMember, ClusterMember, ClusterMember];
    const before = (await fleetStatus(a)).fleet.instances;
    const idOf = (m: ClusterMember) => (before.find((i) => i.pid === m.cli.pid) as InstanceRecord).id;
    const [bId, cId] = [idOf(b), idOf(c)];

    b.cli.child.kill('SIGTERM');
    const [code] = (await once(b.cli.child, 'exit')) as [number];
    assert.equal(code, 0);
    const afterStop = await fleetStatus(a);
    assert.deepEqual(afterStop.fleet.instances.map((i) => i.id).sort(), [idOf(a), cId].sort(), 'removed by its clean stop');
    assert.equal((await redis.cli('EXISTS', `pcl:portcullis:fleet:instance:${bId}`)).stdout.trim(), '0');

    c.cli.child.kill('SIGKILL');
    await once(c.cli.child, 'exit');
    const ttl = Number((await redis.cli('PTTL', `pcl:portcullis:fleet:instance:${cId}`)).stdout.trim());
    assert.ok(ttl > 0 && ttl <= 15_000, `the killed instance's record is left to expire (PTTL ${ttl} ms)`);
    // heartbeat 5 s, record TTL 15 s (docs/cluster.md): gone by then, whatever the poll sees in between
    const gone = await fleetWhen(a, 'the killed instance expired from the fleet', (s) => !s.fleet.instances.some((i) => i.id === cId), 25_000);
    assert.deepEqual(gone.fleet.instances.map((i) => i.id), [idOf(a)]);
    assert.equal(gone.code, 0, 'one instance left: it agrees with itself');
    assert.equal((await redis.cli('ZSCORE', 'pcl:portcullis:fleet:instances', cId)).stdout.trim(), '', 'the reader dropped the expired id from the index');
  });

  test('the ACL docs/cluster.md recommends is enough for an instance and for status --fleet', async (t) => {
    const docs = readFileSync(new URL('../../docs/cluster.md', import.meta.url), 'utf8');
    const block = (/```acl\n([\s\S]*?)```/.exec(docs) as RegExpExecArray)[1] as string;
    const acl = block.trim().split('\n').map((line) => line.replace('CHANGE-ME-TO-A-LONG-RANDOM-PASSWORD', 'pw-from-docs'));
    assert.ok(acl.some((l) => l.includes('~pcl:prod:*') && l.includes('&pcl:prod:*')), 'restricted to the cluster prod');
    const redis = await startRedis(t, { acl });
    const dir = tempDir(t);
    writeFileSync(join(dir, 'redis-password'), 'pw-from-docs\n');
    const member = await startMember(t, `redis://portcullis@127.0.0.1:${redis.port}/0`, leaf, { stateExtra: `cluster: prod, passwordFile: ${join(dir, 'redis-password')}` });
    const { code, fleet, stderr } = await fleetStatus(member);
    assert.equal(code, 0, stderr);
    assert.equal(fleet.instances.length, 1);
    assert.doesNotMatch(member.cli.stderr, /NOPERM/);
    const other = await redis.cli('--user', 'portcullis', '--pass', 'pw-from-docs', '--no-auth-warning', 'SET', 'pcl:other:x', '1');
    assert.match(other.stdout + other.stderr, /NOPERM/, 'another cluster\'s keys are out of reach');
  });

  test('status --fleet refuses a memory-backend config, naming the key to set; status alone describes the instance', async (t) => {
    const dir = tempDir(t);
    const file = join(dir, 'portcullis.yaml');
    writeFileSync(
      file,
      `listen: { https: "127.0.0.1:0" }
sites:
  - hosts: [api.test]
    certificates: [{ cert: ${leaf.chainFile}, key: ${leaf.keyFile} }]
    routes: [{ path: /, upstream: "builtin:whoami" }]
`,
    );
    const r = await runCli(['status', '--fleet', '--config', file], 30_000);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /PCL_CLI_USAGE: --fleet needs state\.backend: redis/);

    // the instance itself describes itself all the same, over its control socket
    assert.equal((await runCli(['status', '--config', file], 30_000)).code, 1, 'nothing runs yet');
    const { cli } = await startInstance(t, dir, file);
    const local = await runCli(['status', '--config', file], 30_000);
    assert.equal(local.code, 0, local.stderr);
    assert.match(local.stdout, /^state +memory \(this instance only\)$/m);
    assert.match(local.stdout, new RegExp(`^instance +\\S+/${cli.pid}/[0-9a-f]{6}$`, 'm'));
  });
});
