import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { sClientRequest } from '../helpers/clients.js';
import { linesOf, nextLine, type LogLine } from '../helpers/cli-logs.js';
import { startMember, type ClusterMember } from '../helpers/cluster.js';
import { TestPki } from '../helpers/pki.js';
import { tempDir } from '../helpers/proxy.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';
import { untilPast, waitFor } from '../helpers/wait.js';
import { startCrlServer } from '../helpers/crl-server.js';

/*
 * Three (or two) instances of one cluster on a real redis-server, each its own
 * `portcullis start` process with its own dataDir; openssl s_client carries a
 * session from one to another (-sess_out, -sess_in) and tells whether it was
 * resumed ("Reused").
 */

const pki = new TestPki();
after(() => pki.cleanup());
const root = pki.root('tickets-cluster-root');
const leaf = pki.leaf('tickets-api', root, { dns: ['api.test'] });
const recordKey = 'pcl:portcullis:v:tls/ticket-keys';
const noticeChannel = 'pcl:portcullis:ch:tls-ticket-keys';

const versions = [
  ['TLS 1.3', '-tls1_3'],
  ['TLS 1.2', '-tls1_2'],
] as const;

const applied = (l: LogLine) => l.event === 'ticket_keys_applied';

/** The key id each member started with (its first ticket_keys_applied line). */
function startKeyOf(member: ClusterMember): LogLine {
  const line = linesOf(member.cli).find(applied);
  assert.ok(line, 'the member logged the keys it took');
  return line;
}

/** One request over a session file: made (`-sess_out`) or offered (`-sess_in`). */
function request(member: ClusterMember, flag: string, session: { out?: string; in?: string }, extra: string[] = []) {
  return sClientRequest(member.port, 'api.test', [flag, '-CAfile', root.certFile, ...extra, ...(session.out ? ['-sess_out', session.out] : []), ...(session.in ? ['-sess_in', session.in] : [])]);
}

/**
 * Makes the cluster's keys older than tls.ticketKeyRotation (12 h by default),
 * as after a long time, and tells the instances to read them: the rotation
 * that is then due is the real one, made by whichever instance takes the lock.
 * Resolves with what each member logged when it applied the new keys.
 */
async function ageKeys(redis: RedisServer, members: readonly ClusterMember[]): Promise<LogLine[]> {
  const from = members.map((m) => m.cli.stderr.length);
  const before = startKeyOrLatest(members[0] as ClusterMember);
  const stored = JSON.parse((await redis.cli('GET', recordKey)).stdout) as { created: number };
  stored.created = Date.now() - 13 * 3_600_000;
  assert.equal((await redis.cli('SET', recordKey, JSON.stringify(stored))).code, 0);
  await redis.cli('PUBLISH', noticeChannel, 'aged by the test');
  return Promise.all(members.map((m, i) => nextLine(m.cli, from[i] as number, (l) => applied(l) && l.keyId !== before)));
}

function startKeyOrLatest(member: ClusterMember): unknown {
  return linesOf(member.cli).filter(applied).at(-1)?.keyId;
}

/** Every file under `dir`, for a search of what an instance wrote to disk. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    const stat = statSync(path);
    return stat.isDirectory() ? filesUnder(path) : stat.isFile() ? [path] : [];
  });
}

/** Waits until `n` connections (one per instance) listen on the ticket-key channel: a notice published then reaches all. */
async function subscribed(redis: RedisServer, n: number): Promise<void> {
  await waitFor(async () => (Number((await redis.cli('PUBSUB', 'NUMSUB', noticeChannel)).stdout.trim().split('\n')[1]) >= n ? true : undefined), { what: `${n} subscribers on ${noticeChannel}` });
}

describe('session tickets in a cluster', () => {
  test('a session made on A resumes on B and on C, which started after it with two workers (TLS 1.3 and 1.2); the keys are in Redis, not in logs or on disk', async (t) => {
    const redis = await startRedis(t);
    // A and B start together: both find no keys, one creates them under the lock, the other takes them
    const [a, b] = await Promise.all([startMember(t, redis.url, leaf), startMember(t, redis.url, leaf)]);
    const dir = tempDir(t);
    for (const [version, flag] of versions) {
      const made = await request(a, flag, { out: join(dir, `${flag}.pem`) });
      assert.equal(made.status, '200', made.stdout + made.stderr);
      assert.equal(made.reused, false, `${version}: a new session`);
    }
    // C's primary takes the cluster's keys and hands them to its workers
    const c = await startMember(t, redis.url, leaf, { body: 'workers: 2' });
    for (const [version, flag] of versions) {
      for (const [name, member] of [
        ['B', b],
        ['C', c],
      ] as const) {
        const resumed = await request(member, flag, { in: join(dir, `${flag}.pem`) });
        assert.equal(resumed.reused, true, `${version}: the session made on A resumes on ${name}`);
        assert.equal(resumed.status, '200');
      }
    }

    const pids = new Set<string>();
    for (let i = 0; i < 8 && pids.size < 2; i++) {
      const resumed = await request(c, '-tls1_3', { in: join(dir, '-tls1_3.pem') });
      assert.equal(resumed.reused, true, 'resumes on every worker of C');
      pids.add(/"pid": (\d+)/.exec(resumed.stdout)?.[1] ?? '');
    }
    assert.equal(pids.size, 2, 'both workers of C resumed it');

    const starts = [a, b, c].map(startKeyOf);
    assert.equal(new Set(starts.map((l) => l.keyId)).size, 1, 'one key id on every instance');
    assert.deepEqual(starts.map((l) => l.how).sort(), ['created', 'received', 'received'], 'created once, by one of the first two');
    const stored = JSON.parse((await redis.cli('GET', recordKey)).stdout) as { keys: string };
    const keys = Buffer.from(stored.keys, 'base64');
    const secrets = [stored.keys, keys.subarray(16, 48).toString('base64'), keys.subarray(16, 32).toString('hex'), keys.subarray(32, 48).toString('hex')];
    for (const member of [a, b, c]) {
      for (const secret of secrets) assert.ok(!member.cli.stderr.includes(secret) && !member.cli.stdout.includes(secret), 'no key material in the logs');
      for (const file of filesUnder(member.dir)) {
        const bytes = readFileSync(file);
        assert.ok(!bytes.includes(keys.subarray(16, 32)) && !secrets.some((s) => bytes.includes(s)), `no key material in ${file}`);
      }
    }
  });

  test('after a rotation every instance serves the new key and a ticket of the previous one still resumes; after two it does not', async (t) => {
    const redis = await startRedis(t);
    const members = await Promise.all([0, 1, 2].map(() => startMember(t, redis.url, leaf)));
    const [a, b, c] = members as [ClusterMember, ClusterMember, ClusterMember];
    await subscribed(redis, 3);
    const dir = tempDir(t);
    for (const [, flag] of versions) assert.equal((await request(a, flag, { out: join(dir, `${flag}.pem`) })).status, '200');

    const first = await ageKeys(redis, members);
    assert.equal(new Set(first.map((l) => l.keyId)).size, 1, 'every instance applied the same new key');
    assert.deepEqual(first.map((l) => l.how).sort(), ['received', 'received', 'rotated'], 'one instance rotated, the others took its keys');
    for (const [version, flag] of versions) {
      for (const member of [b, c]) {
        const resumed = await request(member, flag, { in: join(dir, `${flag}.pem`) });
        assert.equal(resumed.reused, true, `${version}: a ticket of the previous key resumes after the rotation`);
      }
      // a session made now, under the new key, resumes elsewhere too
      assert.equal((await request(c, flag, { out: join(dir, `new${flag}.pem`) })).status, '200');
      assert.equal((await request(a, flag, { in: join(dir, `new${flag}.pem`) })).reused, true, `${version}: a ticket of the new key resumes`);
    }

    await ageKeys(redis, members);
    for (const [version, flag] of versions) {
      const tooOld = await request(b, flag, { in: join(dir, `${flag}.pem`) });
      assert.equal(tooOld.reused, false, `${version}: a ticket two keys old is not accepted`);
      assert.equal(tooOld.status, '200', 'a full handshake instead');
    }
  });

  test('with Redis lost the instances keep their keys and sessions keep resuming; Redis back empty gets the same keys back, and rotation goes on', async (t) => {
    let redis = await startRedis(t);
    const members = await Promise.all([0, 1].map(() => startMember(t, redis.url, leaf)));
    const [a, b] = members as [ClusterMember, ClusterMember];
    const dir = tempDir(t);
    const session = join(dir, 'session.pem');
    assert.equal((await request(a, '-tls1_3', { out: session })).status, '200');
    const keyId = startKeyOf(a).keyId;

    const from = members.map((m) => m.cli.stderr.length);
    await redis.kill();
    await Promise.all(members.map((m, i) => nextLine(m.cli, from[i] as number, (l) => l.event === 'state_backend_lost')));
    assert.equal((await request(b, '-tls1_3', { in: session })).reused, true, 'resumes on B during the outage');

    // restarted without persistence: the cluster's keys are gone from Redis, not from the instances
    redis = await startRedis(t, { port: redis.port });
    const reseeded = await Promise.race(members.map((m, i) => nextLine(m.cli, from[i] as number, (l) => l.event === 'ticket_keys_reseeded', 20_000)));
    assert.equal(reseeded.keyId, keyId, 'the keys the instances serve with are written back');
    await subscribed(redis, 2);
    for (const member of members) assert.equal((await request(member, '-tls1_3', { in: session })).reused, true, 'the session made before the outage still resumes');
    const rotated = await ageKeys(redis, members);
    assert.equal(new Set(rotated.map((l) => l.keyId)).size, 1, 'rotation goes on after the recovery, in step');
  });
});

describe('client certificates in a cluster', () => {
  test('a session made on A by a client under an intermediate that clientAuth.ca does not list is checked for revocation when it resumes on B', async (t) => {
    const mtlsRoot = pki.root('tickets-mtls-root');
    const inter = pki.intermediate('tickets-mtls-inter', mtlsRoot);
    const server = pki.leaf('tickets-mtls-api', mtlsRoot, { dns: ['api.test'] });
    const crls = await startCrlServer(t);
    // the clients' CRL is the intermediate's, named in their certificates; the root's CRL covers the intermediate
    const good = pki.leaf('tickets-mtls-good', inter, { eku: 'clientAuth', crlUrl: crls.url('inter.crl') });
    const revoked = pki.leaf('tickets-mtls-revoked', inter, { eku: 'clientAuth', crlUrl: crls.url('inter.crl') });
    const dir = tempDir(t);
    const rootCrl = pki.crl(mtlsRoot, join(dir, 'root.crl'));
    const redis = await startRedis(t);
    const siteExtra = `\n    clientAuth: { mode: require, ca: [${mtlsRoot.certFile}], crl: [${rootCrl}] }`;
    const [a, b] = await Promise.all([0, 1].map(() => startMember(t, redis.url, server, { siteExtra }))) as [ClusterMember, ClusterMember];
    const fromB = b.cli.stderr.length;
    const client = (who: typeof good) => ['-tls1_3', '-CAfile', mtlsRoot.certFile, '-cert', who.certFile, '-key', who.keyFile, '-cert_chain', inter.certFile];
    const call = (member: ClusterMember, who: typeof good, session: { out?: string; in?: string }) =>
      sClientRequest(member.port, 'api.test', [...client(who), ...(session.out ? ['-sess_out', session.out] : []), ...(session.in ? ['-sess_in', session.in] : [])]);

    // The CRL A fetches is shared with B until its nextUpdate (cluster.md): a short one, so that B must
    // fetch the one that lists the revocation once it has passed, as it would after any CRL's period.
    const firstCrlEnds = Date.now() + 10_000;
    crls.files.set('inter.crl', readFileSync(pki.crl(inter, join(dir, 'inter.crl'), { der: true, nextUpdate: new Date(firstCrlEnds) })));
    // full handshakes on A, with the intermediate: both admitted
    for (const who of [good, revoked]) {
      const made = await call(a, who, { out: join(dir, `${who === good ? 'good' : 'revoked'}.pem`) });
      assert.equal(made.status, '200', made.stdout + made.stderr);
    }
    // B never saw the intermediate in a handshake: it learns it from the cluster
    const interFingerprint = new X509Certificate(readFileSync(inter.certFile)).fingerprint256;
    await nextLine(b.cli, fromB, (l) => l.event === 'client_intermediate_learned' && l.fingerprint === interFingerprint);

    pki.revoke(inter, revoked.certFile);
    crls.files.set('inter.crl', readFileSync(pki.crl(inter, join(dir, 'inter.crl'), { der: true })));
    await untilPast(firstCrlEnds);

    const resumedGood = await call(b, good, { in: join(dir, 'good.pem') });
    assert.equal(resumedGood.reused, true, 'the session made on A resumes on B');
    assert.equal(resumedGood.status, '200', 'B rebuilt the chain and found the client good in its CRL');
    const resumedRevoked = await call(b, revoked, { in: join(dir, 'revoked.pem') });
    assert.equal(resumedRevoked.reused, true, 'OpenSSL resumed the session of the now revoked certificate');
    assert.equal(resumedRevoked.status, '403', resumedRevoked.stdout);
    const refusal = await nextLine(b.cli, fromB, (l) => l.event === 'client_cert_rejected' && l.reason === 'revoked');
    assert.equal(refusal.resumed, true);
    assert.equal(refusal.source, 'crl');
  });
});
