import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { leaseSizeOf } from '../../src/state/index.js';
import { nextLine } from '../helpers/cli-logs.js';
import { curl, resolveTo } from '../helpers/clients.js';
import { startMember, type ClusterMember } from '../helpers/cluster.js';
import { TestPki } from '../helpers/pki.js';
import { startRedis } from '../helpers/redis.js';

const pki = new TestPki();
after(() => pki.cleanup());
const root = pki.root('cluster-rate-root');
const leaf = pki.leaf('api', root, { dns: ['api.test'] });

// R requests at once, next to no refill: what three instances admit together is the burst, plus the bound's slack
const [rps, burst] = [0.001, 30];

/** `n` requests from 127.0.0.1 over one connection to `member`: each answer's status and Retry-After. */
async function requests(member: ClusterMember, n: number): Promise<{ status: number; retryAfter: number }[]> {
  const urls = Array.from({ length: n }, () => ['-o', '/dev/null', `https://api.test:${member.port}/x`]).flat();
  const r = await curl([...resolveTo('api.test', member.port), '--cacert', root.certFile, '-w', '%{http_code} %header{retry-after}\\n', ...urls]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout
    .trim()
    .split('\n')
    .map((line) => {
      const [status, retryAfter] = line.split(' ');
      return { status: Number(status), retryAfter: Number(retryAfter || 0) };
    });
}

test('a rate limit of R across three instances on one Redis admits about R in total (within burst + rps*w + P*L), refuses with Retry-After, and each instance serves on its own buckets when Redis is killed', async (t) => {
  const redis = await startRedis(t);
  const members = await Promise.all([0, 1, 2].map(() => startMember(t, redis.url, leaf, { siteExtra: `\n    rateLimit: { rps: ${rps}, burst: ${burst} }` })));
  const started = performance.now();
  let admitted = 0;
  let sent = 0;
  let refusal: { status: number; retryAfter: number } | null = null;
  // round robin over the three, two requests per connection, until each refuses because the fleet's bucket is empty
  for (let round = 0; round < 2 * burst; round++) {
    const last = [];
    for (const m of members) {
      const answers = await requests(m, 2);
      sent += answers.length;
      admitted += answers.filter((a) => a.status === 200).length;
      assert.deepEqual(answers.filter((a) => a.status !== 200 && a.status !== 429), [], 'answers are 200 or 429');
      last.push(answers.at(-1)!);
    }
    if (last.every((a) => a.status === 429 && a.retryAfter > 1)) {
      refusal = last[0]!;
      break;
    }
  }
  const bound = burst + Math.ceil((rps * (performance.now() - started)) / 1000) + members.length * leaseSizeOf(burst);
  t.diagnostic(`admitted ${admitted} of ${sent} requests over three instances; limit ${burst}, bound ${bound}`);
  assert.ok(refusal, 'every instance ends up refusing');
  assert.ok(admitted <= bound, `admitted ${admitted}: at most ${bound}, not 3R = ${3 * burst}`);
  assert.ok(admitted >= burst - members.length * leaseSizeOf(burst), `admitted ${admitted}: about the burst of ${burst}`);
  assert.ok(refusal.retryAfter >= 1 && refusal.retryAfter <= Math.ceil(1 / rps), `Retry-After ${refusal.retryAfter}: when the fleet's next token comes`);

  // Redis killed: each instance falls back to its own buckets (fail open, logged) and serves the client again
  const marks = members.map((m) => m.cli.stderr.length);
  await redis.kill();
  await Promise.all(members.map((m, i) => nextLine(m.cli, marks[i]!, (l) => l.event === 'rate_limit_local')));
  for (const m of members) assert.deepEqual((await requests(m, 1)).map((a) => a.status), [200], 'served on the local bucket');
});
