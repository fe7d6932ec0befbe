import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { createLogger, Metrics } from '../../src/observe/index.js';
import { RedisLink, sharedAnswers, type AnswerRequest } from '../../src/state/index.js';
import { curl, resolveTo, run } from '../helpers/clients.js';
import { nextLine, type LogLine } from '../helpers/cli-logs.js';
import { startMember, type ClusterMember } from '../helpers/cluster.js';
import { startOcspResponder } from '../helpers/ocsp-responder.js';
import { TestPki, type Ca, type Leaf } from '../helpers/pki.js';
import { tempDir } from '../helpers/proxy.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';
import { within } from '../helpers/wait.js';
import { startCrlServer } from '../helpers/crl-server.js';

/*
 * CRLs, client OCSP answers and OCSP staples in a cluster: fetched once,
 * shared through Redis, and verified by every instance before use.
 */

const pki = new TestPki();
after(() => pki.cleanup());

/** A request to api.test on `member` with `client`'s certificate: the status, and the reason of a refusal. */
async function call(member: ClusterMember, root: Ca, client: Leaf): Promise<{ status: number; reason: string | null }> {
  const r = await curl([...resolveTo('api.test', member.port), '--cacert', root.certFile, '--cert', client.chainFile, '--key', client.keyFile, '-w', '\n@@%{http_code}', `https://api.test:${member.port}/`]);
  assert.equal(r.code, 0, r.stderr);
  const [body, status] = r.stdout.split('\n@@') as [string, string];
  return { status: Number(status), reason: Number(status) === 200 ? null : (JSON.parse(body) as { reason: string }).reason };
}

/** The first log line of `event` (so far or to come) that `match` accepts. */
const logOf = (member: ClusterMember, event: string, match: (l: LogLine) => boolean = () => true) => nextLine(member.cli, 0, (l) => l.event === event && match(l), 30_000);

/** The one key of the shared answers of `kind` in Redis. */
async function answerKey(redis: RedisServer, kind: string): Promise<string> {
  const keys = (await redis.cli('--scan', '--pattern', `pcl:*:answer:${kind}:*`)).stdout.split('\n').filter(Boolean);
  assert.equal(keys.length, 1, `one shared ${kind} answer in Redis: ${keys.join(', ')}`);
  return keys[0] as string;
}

/** Runs `fn` with a Redis client of its own, as anyone with access to the cluster's Redis could. */
async function withRedis<T>(redis: RedisServer, fn: (client: Redis) => Promise<T>): Promise<T> {
  const client = new Redis(redis.port, '127.0.0.1');
  try {
    return await fn(client);
  } finally {
    await client.quit();
  }
}

/** Replaces the bytes of a shared answer. */
const overwrite = (redis: RedisServer, key: string, der: Buffer) => withRedis(redis, (c) => c.hset(key, 'der', der, 'at', String(Date.now())));

describe('revocation answers shared by the cluster', () => {
  test('two instances asking at once fetch once, the second verifying the first one\'s copy; with Redis gone each fetches directly', async (t) => {
    const redis = await startRedis(t);
    const settings = { display: redis.url, host: '127.0.0.1', port: redis.port, db: 0, username: null, password: null, tls: null, sentinels: [], cluster: 'answers' };
    const quiet = createLogger('fatal');
    const [linkA, linkB] = await Promise.all([RedisLink.open(settings, quiet), RedisLink.open(settings, quiet)]);
    t.after(() => Promise.all([linkA.close(), linkB.close()]));
    const [metricsA, metricsB] = [new Metrics(), new Metrics()];
    const [a, b] = [sharedAnswers(linkA, quiet, metricsA), sharedAnswers(linkB, quiet, metricsB)];
    let fetches = 0;
    let started!: () => void;
    const fetching = new Promise<void>((resolve) => (started = resolve));
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const verified: string[] = [];
    const request = (subject: string): AnswerRequest<string> => ({
      kind: 'crl',
      subject,
      source: subject,
      storedAfter: 0,
      verify: async (bytes) => {
        verified.push(bytes.toString());
        return bytes.toString();
      },
      fetch: async () => {
        fetches++;
        started();
        await gate;
        return { answer: `answer ${fetches}`, bytes: Buffer.from(`answer ${fetches}`) };
      },
      shareUntil: () => Date.now() + 60_000,
    });

    const first = a.obtain(request('http://crl.test/a.crl'));
    await fetching; // A holds the lock and fetches
    const second = b.obtain(request('http://crl.test/a.crl'));
    release();
    assert.deepEqual(await within(first, 10_000, "A's answer"), { answer: 'answer 1', from: 'fetched' });
    assert.deepEqual(await within(second, 20_000, "B's answer"), { answer: 'answer 1', from: 'shared' });
    assert.equal(fetches, 1);
    assert.deepEqual(verified, ['answer 1'], 'B verified the copy before using it');
    assert.match(await metricsB.registry.metrics(), /portcullis_shared_answers_total\{kind="crl",result="shared"\} 1/);

    const lost = new Promise<void>((resolve) => linkA.onLink((up) => up || resolve()));
    await redis.kill();
    await within(lost, 10_000, 'the loss of Redis');
    assert.deepEqual(await within(a.obtain(request('http://crl.test/b.crl')), 10_000, 'an answer without Redis'), { answer: 'answer 2', from: 'fetched' });
    assert.match(await metricsA.registry.metrics(), /portcullis_shared_answers_total\{kind="crl",result="direct"\} 1/);
  });

  test('a CRL URL is fetched once for two instances: the second verifies and uses the shared copy', async (t) => {
    const root = pki.root('shared-crl-root');
    const server = pki.leaf('shared-crl-server', root, { dns: ['api.test'] });
    const good = pki.leaf('shared-crl-good', root, { eku: 'clientAuth' });
    const revoked = pki.leaf('shared-crl-revoked', root, { eku: 'clientAuth' });
    pki.revoke(root, revoked.certFile);
    const crl = readFileSync(pki.crl(root, join(tempDir(t), 'clients.crl'), { der: true }));
    const origin = await startCrlServer(t);
    origin.files.set('clients.crl', crl);
    const redis = await startRedis(t);
    const siteExtra = `\n    clientAuth: { mode: require, ca: [${root.certFile}], crl: ["${origin.url('clients.crl')}"] }`;

    const a = await startMember(t, redis.url, server, { siteExtra });
    const loadedA = await logOf(a, 'crl_loaded');
    assert.equal(loadedA.from, undefined, 'A fetched it from the origin');
    assert.equal(origin.hits.get('clients.crl'), 1);

    const b = await startMember(t, redis.url, server, { siteExtra });
    const loadedB = await logOf(b, 'crl_loaded');
    assert.equal(loadedB.from, 'cluster', 'B took the copy A shared');
    assert.equal(loadedB.revoked, 1);
    assert.deepEqual(await call(b, root, revoked), { status: 403, reason: 'revoked' });
    assert.deepEqual(await call(b, root, good), { status: 200, reason: null });
    assert.equal(origin.hits.get('clients.crl'), 1, 'the origin was asked once for the two instances');
  });

  test('a CRL in Redis signed by another CA is not used: the instance fetches and verifies its own, and still refuses a revoked client', async (t) => {
    const root = pki.root('tampered-crl-root');
    const impostor = pki.intermediate('tampered-crl-impostor', pki.root('tampered-crl-other'), { commonName: 'tampered-crl-root' });
    const server = pki.leaf('tampered-crl-server', root, { dns: ['api.test'] });
    const revoked = pki.leaf('tampered-crl-revoked', root, { eku: 'clientAuth' });
    const dir = tempDir(t);
    // made before the revocation: it lists nobody, and would admit the revoked client if it were believed
    const forged = readFileSync(pki.crl(root, join(dir, 'forged.crl'), { signedBy: impostor, lastUpdate: new Date() }));
    pki.revoke(root, revoked.certFile);
    const crl = readFileSync(pki.crl(root, join(dir, 'clients.crl'), { der: true, lastUpdate: new Date(Date.now() - 120_000) }));
    const origin = await startCrlServer(t);
    origin.files.set('clients.crl', crl);
    const redis = await startRedis(t);
    const siteExtra = `\n    clientAuth: { mode: require, ca: [${root.certFile}], crl: ["${origin.url('clients.crl')}"] }`;

    const a = await startMember(t, redis.url, server, { siteExtra });
    await logOf(a, 'crl_loaded');
    const key = await answerKey(redis, 'crl');
    await overwrite(redis, key, forged);

    const b = await startMember(t, redis.url, server, { siteExtra });
    const rejected = await logOf(b, 'shared_answer_rejected');
    assert.equal(rejected.kind, 'crl');
    assert.equal(rejected.reason, 'bad_signature');
    const loaded = await logOf(b, 'crl_loaded');
    assert.equal(loaded.from, undefined, 'B fetched the CRL itself');
    assert.equal(origin.hits.get('clients.crl'), 2);
    assert.deepEqual(await call(b, root, revoked), { status: 403, reason: 'revoked' });
    assert.deepEqual(await withRedis(redis, (c) => c.hgetBuffer(key, 'der')), crl, 'the verified CRL replaced the forged copy');
  });

  test('an OCSP answer in Redis signed by another CA is not used: the instance asks the responder and refuses the revoked client', async (t) => {
    const root = pki.root('tampered-ocsp-root');
    const foreign = pki.root('tampered-ocsp-foreign');
    const responder = await startOcspResponder(t, pki, root, { nmin: 10 });
    const server = pki.leaf('tampered-ocsp-server', root, { dns: ['api.test'] });
    const revoked = pki.leaf('tampered-ocsp-revoked', root, { eku: 'clientAuth', ocspUrl: responder.url });
    const dir = tempDir(t);
    // "good" about the client, signed by a CA that has no say over it: made before the revocation
    const request = join(dir, 'forged.req');
    const forged = join(dir, 'forged.resp');
    for (const args of [
      ['ocsp', '-issuer', root.certFile, '-cert', revoked.certFile, '-no_nonce', '-reqout', request],
      ['ocsp', '-index', pki.indexFile(root), '-CA', root.certFile, '-rsigner', foreign.certFile, '-rkey', foreign.keyFile, '-reqin', request, '-respout', forged, '-nmin', '10'],
    ]) {
      const r = await run('openssl', args);
      assert.equal(r.code, 0, r.stderr);
    }
    pki.revoke(root, revoked.certFile);
    const redis = await startRedis(t);
    const siteExtra = `\n    clientAuth: { mode: require, ca: [${root.certFile}], ocsp: true }`;

    const a = await startMember(t, redis.url, server, { siteExtra });
    assert.deepEqual(await call(a, root, revoked), { status: 403, reason: 'revoked' });
    assert.equal(responder.asked(), 1);
    await overwrite(redis, await answerKey(redis, 'ocsp'), readFileSync(forged));

    const b = await startMember(t, redis.url, server, { siteExtra });
    assert.deepEqual(await call(b, root, revoked), { status: 403, reason: 'revoked' });
    const rejected = await logOf(b, 'shared_answer_rejected');
    assert.equal(rejected.kind, 'ocsp');
    assert.equal(rejected.reason, 'unauthorized_responder');
    assert.equal(responder.asked(), 2, 'B asked the responder itself');
  });
});

/** What `openssl s_client -status` shows of the staple on `member`: the response as printed (signature included), or null. */
async function stapleOf(member: ClusterMember, root: Ca): Promise<string | null> {
  const r = await run('openssl', ['s_client', '-connect', `127.0.0.1:${member.port}`, '-servername', 'api.test', '-status', '-CAfile', root.certFile, '-verify_return_error'], '', 15_000);
  assert.equal(r.code, 0, r.stderr);
  return /OCSP Response Data:[\s\S]*?(?=\n---)/.exec(r.stdout)?.[0] ?? null;
}

describe('OCSP staples shared by the cluster', () => {
  test('two instances staple the same response, which the responder was asked for once', async (t) => {
    const root = pki.root('shared-staple-root');
    const issuer = pki.intermediate('shared-staple-ca', root);
    const responder = await startOcspResponder(t, pki, issuer, { nmin: 10 });
    const leaf = pki.leaf('shared-staple', issuer, { dns: ['api.test'], ocspUrl: responder.url });
    const redis = await startRedis(t);

    const a = await startMember(t, redis.url, leaf);
    const updatedA = await logOf(a, 'ocsp_staple_updated');
    const b = await startMember(t, redis.url, leaf);
    const updatedB = await logOf(b, 'ocsp_staple_updated');
    assert.equal(updatedA.from, undefined);
    assert.equal(updatedB.from, 'cluster');
    assert.equal(updatedB.thisUpdate, updatedA.thisUpdate);

    const [stapleA, stapleB] = [await stapleOf(a, root), await stapleOf(b, root)];
    assert.ok(stapleA, 'A staples a response');
    assert.match(stapleA, /Cert Status: good/);
    // the responder signs every answer anew (ECDSA): the same signature is the same response
    assert.equal(stapleB, stapleA);
    assert.equal(responder.asked(), 1);
  });
});
