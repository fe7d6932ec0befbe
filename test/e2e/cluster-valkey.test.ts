import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { leaseSizeOf } from '../../src/state/index.js';
import { nextLine } from '../helpers/cli-logs.js';
import { curl, plaintextFrom, resolveTo, sClientRequest } from '../helpers/clients.js';
import { startMember, type ClusterMember } from '../helpers/cluster.js';
import { TestPki } from '../helpers/pki.js';
import { tempDir } from '../helpers/proxy.js';
import { startRedis } from '../helpers/redis.js';

/*
 * The cluster on Valkey 8 (bookworm-backports) instead of Redis 7: what
 * leans on the server's behaviour — Lua scripts (rate leases, fenced writes),
 * sorted sets with ZADD GT (blocks), Pub/Sub, the ticket keys under a lock —
 * works the same. The other cluster tests run on Redis.
 */

const pki = new TestPki();
after(() => pki.cleanup());
const root = pki.root('cluster-valkey-root');
const leaf = pki.leaf('api', root, { dns: ['api.test'] });
const [rps, burst] = [0.001, 10];

/** `n` requests from 127.0.0.1 over one connection: their statuses. */
async function statuses(member: ClusterMember, n: number): Promise<number[]> {
  const urls = Array.from({ length: n }, () => ['-o', '/dev/null', `https://api.test:${member.port}/`]).flat();
  const r = await curl([...resolveTo('api.test', member.port), '--cacert', root.certFile, '-w', '%{http_code}\\n', ...urls]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim().split('\n').map(Number);
}


test('two instances on Valkey 8 share session tickets, one rate limit and detector blocks', async (t) => {
  const valkey = await startRedis(t, { server: 'valkey' });
  const info = await valkey.cli('INFO', 'server');
  assert.match(info.stdout, /valkey_version:8\./, 'the server is Valkey 8');
  const opts = { siteExtra: `\n    rateLimit: { rps: ${rps}, burst: ${burst} }`, body: 'detector: { threshold: 3, allow: ["127.0.0.1"] }' };
  const a = await startMember(t, valkey.url, leaf, opts);
  const b = await startMember(t, valkey.url, leaf, opts);

  // a session made on A resumes on B
  const session = join(tempDir(t), 'session.pem');
  const made = await sClientRequest(a.port, 'api.test', ['-CAfile', root.certFile, '-sess_out', session]);
  assert.equal(made.status, '200', made.stderr);
  const resumed = await sClientRequest(b.port, 'api.test', ['-CAfile', root.certFile, '-sess_in', session]);
  assert.equal(resumed.reused, true, 'the ticket made on A resumes on B');
  assert.equal(resumed.status, '200', resumed.stderr);

  // one limit over both (the two requests above count): what two separate limits would admit (2 × burst) is out of reach
  let admitted = 2;
  for (let round = 0; round < burst; round++) for (const m of [a, b]) admitted += (await statuses(m, 2)).filter((s) => s === 200).length;
  const bound = burst + 1 + 2 * 2 * leaseSizeOf(burst);
  t.diagnostic(`admitted ${admitted} of ${burst * 4 + 2}; limit ${burst}, bound ${bound}`);
  assert.ok(admitted >= burst && admitted <= bound, `admitted ${admitted}: between ${burst} and ${bound}, not ${2 * burst}`);

  // failures against A block the source on B too
  const mark = b.cli.stderr.length;
  for (let i = 0; i < 3; i++) assert.match(await plaintextFrom('127.0.0.2', a.port), /^HTTP\/1\.1 400 /);
  await nextLine(b.cli, mark, (l) => l.event === 'cluster_block_applied' && l.address === '127.0.0.2');
  assert.equal(await plaintextFrom('127.0.0.2', b.port), '', 'closed at accept on B');
  assert.match(await plaintextFrom('127.0.0.3', b.port), /^HTTP\/1\.1 400 /, 'another source is served');
});
