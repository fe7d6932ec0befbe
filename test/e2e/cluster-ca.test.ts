import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { createLogger } from '../../src/observe/index.js';
import { CaStore, clusterCaReplica } from '../../src/pki/index.js';
import { RedisLink, type RedisSettings } from '../../src/state/index.js';
import { nextLine, startInstance } from '../helpers/cli-logs.js';
import { runCli } from '../helpers/cli-process.js';
import { curl, resolveTo, run } from '../helpers/clients.js';
import { tempDir, type Scope } from '../helpers/proxy.js';
import { startRedis } from '../helpers/redis.js';

/** A config of one member on `redisUrl`: an admin listener, and an mTLS site trusting the built-in CA and its CRL (both the local copy of the cluster's). */
function memberConfig(t: Scope, redisUrl: string): { dir: string; file: string } {
  const dir = tempDir(t);
  const file = join(dir, 'portcullis.yaml');
  writeFileSync(
    file,
    `dataDir: state
listen: { https: "127.0.0.1:0", admin: "127.0.0.1:0" }
log: { access: off }
timeouts: { drain: 2s }
state: { backend: redis, redis: "${redisUrl}" }
sites:
  - hosts: [api.test]
    certificates: [{ internal: true }]
    clientAuth: { mode: require, ca: [state/ca/ca.pem], crl: [state/ca/ca.crl] }
    routes: [{ path: /, upstream: "builtin:whoami" }]
`,
  );
  return { dir, file };
}

const ca = (file: string, ...args: string[]) => runCli(['ca', ...args, '--config', file]);

/** Two members of one cluster: the CA made by `ca init` through Redis with A's config, before either starts (B finds it there). */
async function twoMembers(t: Scope) {
  const redis = await startRedis(t);
  const configs = [memberConfig(t, redis.url), memberConfig(t, redis.url)];
  const init = await ca(configs[0]!.file, 'init');
  assert.equal(init.code, 0, init.stderr);
  const members = await Promise.all(
    configs.map(async ({ dir, file }) => {
      const { cli, port } = await startInstance(t, dir, file);
      const admin = Number((await cli.waitFor(/"admin":"127\.0\.0\.1:(\d+)"/))[1]);
      return { cli, port, admin, dir, file, caFile: join(dir, 'state', 'ca', 'ca.pem') };
    }),
  );
  return { redis, members: members as [(typeof members)[0], (typeof members)[0]] };
}

/** A fresh key and a CSR for it. */
async function csr(dir: string, name: string): Promise<{ key: string; csr: string }> {
  const key = join(dir, `${name}.key`);
  const out = join(dir, `${name}.csr`);
  const made = await run('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', out, '-subj', `/CN=${name}`]);
  assert.equal(made.code, 0, made.stderr);
  return { key, csr: out };
}

/** POST /v1/enroll to an admin listener, trusting `caFile`; the body goes to `out`; resolves with "status content-type". */
const enroll = (caFile: string, admin: number, token: string, csrFile: string, out: string) =>
  curl(['--cacert', caFile, '-H', `Authorization: Bearer ${token}`, '--data-binary', `@${csrFile}`, '-o', out, '-w', '%{http_code} %{content_type}', `https://127.0.0.1:${admin}/v1/enroll`]);

async function newToken(file: string, name: string): Promise<string> {
  const made = await ca(file, 'enroll-token', '--name', name);
  assert.equal(made.code, 0, made.stderr);
  return (/^(pce_\S+)$/m.exec(made.stdout) as RegExpExecArray)[1] as string;
}

const settingsFor = (port: number): RedisSettings => ({ display: `redis://127.0.0.1:${port}/0`, host: '127.0.0.1', port, db: 0, username: null, password: null, tls: null, sentinels: [], cluster: 'test' });
const quiet = createLogger('fatal');

describe('the built-in CA in a cluster on redis', () => {
  test('an enrollment token raced on two instances is spent once: one certificate, one used_enrollment_token', async (t) => {
    const { members } = await twoMembers(t);
    const [a, b] = members;
    assert.equal(readFileSync(a.caFile, 'utf8'), readFileSync(b.caFile, 'utf8'), 'one CA for the fleet');
    const work = tempDir(t);
    for (let round = 0; round < 3; round++) {
      // made through Redis with B's config; spent at A and at B at the same moment
      const token = await newToken(b.file, `partner-${round}`);
      const requests = await Promise.all([a, b].map(async (m, i) => ({ m, out: join(work, `r${round}-${i}.out`), req: await csr(work, `r${round}-${i}`) })));
      const answers = await Promise.all(requests.map(({ m, out, req }) => enroll(a.caFile, m.admin, token, req.csr, out)));
      assert.deepEqual(answers.map((r) => r.stdout).sort(), ['200 application/pem-certificate-chain', '403 application/json'], `round ${round}: ${answers.map((r) => r.stdout + r.stderr).join(' | ')}`);
      const refused = requests[answers.findIndex((r) => r.stdout.startsWith('403'))] as (typeof requests)[0];
      assert.equal(JSON.parse(readFileSync(refused.out, 'utf8')).reason, 'used_enrollment_token');
      const winner = requests[answers.findIndex((r) => r.stdout.startsWith('200'))] as (typeof requests)[0];
      assert.ok(new X509Certificate(readFileSync(winner.out)).verify(new X509Certificate(readFileSync(a.caFile)).publicKey));
    }
    // the cluster's database, read through either member's config: one certificate per token, each token used once
    for (const m of members) {
      const list = await ca(m.file, 'list');
      assert.equal(list.code, 0, list.stderr);
      for (let round = 0; round < 3; round++) {
        assert.equal(list.stdout.match(new RegExp(`\\s+client\\s+partner-${round}\\s`, 'g'))?.length, 1, list.stdout);
        assert.match(list.stdout, new RegExp(`token [0-9a-f]{16}\\s+partner-${round}\\s+used `));
      }
    }
  });

  test('a certificate issued on A is revoked from B, every member refuses it, also once Redis is gone, when enrollments answer state_unavailable', async (t) => {
    const { redis, members } = await twoMembers(t);
    const [a, b] = members;
    const work = tempDir(t);
    const token = await newToken(a.file, 'billing');
    const partner = await csr(work, 'billing');
    const chain = join(work, 'billing.chain.pem');
    assert.equal((await enroll(a.caFile, a.admin, token, partner.csr, chain)).stdout, '200 application/pem-certificate-chain');
    const serial = new X509Certificate(readFileSync(chain)).serialNumber;
    const call = (m: typeof a) => curl([...resolveTo('api.test', m.port), '--cacert', a.caFile, '--cert', chain, '--key', partner.key, '-w', '\n%{http_code}', `https://api.test:${m.port}/`]);
    for (const m of members) assert.match((await call(m)).stdout, /200$/);

    const marks = members.map((m) => m.cli.stderr.length);
    const revoked = await ca(b.file, 'revoke', serial, '--reason', 'keyCompromise');
    assert.equal(revoked.code, 0, revoked.stderr);
    // each member copies the new CRL from the cluster into its dataDir, where its CRL source picks it up
    await Promise.all(members.map((m, i) => nextLine(m.cli, marks[i] as number, (l) => l.event === 'crl_loaded' && l.revoked === 1, 40_000)));
    for (const m of members) assert.match((await call(m)).stdout, /"reason":"revoked"[\s\S]*403$/);
    const list = await ca(a.file, 'list');
    assert.match(list.stdout, new RegExp(`${serial}\\s+client\\s+billing .*revoked .*keyCompromise`));
    await nextLine(a.cli, marks[0] as number, (l) => l.event === 'ca_synced');

    // Redis gone: the revocation is still enforced from the local copies; an enrollment cannot be recorded, so none is made
    const spare = await newToken(a.file, 'spare');
    const spareCsr = await csr(work, 'spare');
    await redis.kill();
    for (const m of members) {
      const answer = await enroll(a.caFile, m.admin, spare, spareCsr.csr, join(work, 'spare.out'));
      assert.equal(answer.stdout, '503 application/json');
      assert.equal(JSON.parse(readFileSync(join(work, 'spare.out'), 'utf8')).reason, 'state_unavailable');
      assert.match((await call(m)).stdout, /"reason":"revoked"[\s\S]*403$/);
    }
  });

  test('a change whose holder lost the cluster lock is refused and records nothing; a machine with a CA of its own moves it aside to join', async (t) => {
    const redis = await startRedis(t);
    const [linkA, linkB] = await Promise.all([RedisLink.open(settingsFor(redis.port), quiet), RedisLink.open(settingsFor(redis.port), quiet)]);
    t.after(() => Promise.all([linkA.close(), linkB.close()]));
    const [dataA, dataB, dataC] = [tempDir(t), tempDir(t), tempDir(t)];
    const replicaA = clusterCaReplica(linkA, quiet);
    const storeB = await CaStore.open(dataB, { replica: clusterCaReplica(linkB, quiet) });
    const storeA = await CaStore.open(dataA, { replica: replicaA });
    assert.equal(storeA.ca.cert.subject, storeB.ca.cert.subject, 'A took the CA B made');

    // A stalls holding the lock, which expires (deleted here); B's change goes through, A's late write is fenced off
    let resume!: () => void;
    const stalled = new Promise<void>((resolve) => (resume = resolve));
    let entered!: () => void;
    const inside = new Promise<void>((resolve) => (entered = resolve));
    const late = replicaA.change(storeA.dir, async () => {
      entered();
      await stalled;
      writeFileSync(join(storeA.dir, 'db.json'), '{"version":1,"crlNumber":99,"issued":[]}\n');
    });
    await inside;
    await redis.cli('DEL', 'pcl:test:lock:ca');
    const { record } = await storeB.createEnrollment({ commonName: 'partner', uris: [], dns: [], lifetimeDays: 1, validForMs: 3_600_000 });
    resume();
    await assert.rejects(late, (err: Error & { code?: string }) => err.code === 'PCL_STATE_SHARED_WRITE_FAILED');
    const storeC = await CaStore.open(dataC, { replica: clusterCaReplica(linkB, quiet) });
    assert.deepEqual(storeC.enrollments().map((e) => e.id), [record.id], 'the cluster holds B\'s change, not A\'s');

    // a machine that ran its own CA before joining: its folder is moved aside, never overwritten
    const own = tempDir(t);
    const before = await CaStore.open(own);
    await before.issue({ commonName: 'local', usage: 'client', lifetimeDays: 1 });
    const joined = await CaStore.open(own, { replica: clusterCaReplica(linkA, quiet) });
    assert.equal(joined.ca.cert.subject, storeB.ca.cert.subject);
    const aside = readdirSync(joined.dir).filter((n) => n.startsWith('replaced-'));
    assert.equal(aside.length, 1);
    assert.ok(existsSync(join(joined.dir, aside[0] as string, 'ca.key')));
    assert.match(readFileSync(join(joined.dir, aside[0] as string, 'db.json'), 'utf8'), /"commonName": "local"/);
    assert.equal(joined.list().length, 0, 'the cluster\'s database, not the local one');
  });
});
