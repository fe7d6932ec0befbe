import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { newApiKey } from '../../src/access/index.js';
import { curl, resolveTo } from '../helpers/clients.js';
import { TestPki } from '../helpers/pki.js';
import { startProxy } from '../helpers/proxy.js';
import { untilPast } from '../helpers/wait.js';

const pki = new TestPki();
after(() => pki.cleanup());

test('rateLimit: a client over its bucket gets 429 with Retry-After and RateLimit fields, other clients do not, and it recovers after Retry-After', async (t) => {
  const root = pki.root('rate-root');
  const leaf = pki.leaf('rate', root, { dns: ['api.test'] });
  const p = await startProxy(
    t,
    `listen: { https: "127.0.0.1:0" }
log: { access: off }
sites:
  - hosts: [api.test]
    certificates: [{ cert: ${leaf.chainFile}, key: ${leaf.keyFile} }]
    rateLimit: { rps: 0.5, burst: 2 }
    routes:
      - { path: /limited/, upstream: "builtin:whoami" }
      - { path: /generous/, upstream: "builtin:whoami", rateLimit: { rps: 1000, burst: 1000 } }
      - { path: /keyed/, upstream: "builtin:whoami", apiKeys: required, rateLimit: { rps: 0.5, burst: 1 } }
`,
  );
  // one connection, several requests: the codes and the fields of each answer
  const burst = async (source: string, path: string, n: number, key: string | null = null) => {
    const urls = Array.from({ length: n }, () => ['-o', '/dev/null', `https://api.test:${p.port}${path}`]).flat();
    const r = await curl([...resolveTo('api.test', p.port), '--interface', source, '--cacert', root.certFile, ...(key ? ['-H', `Authorization: Bearer ${key}`] : []), '-w', '%{http_code} %header{retry-after} %header{ratelimit-limit} %header{ratelimit-remaining}\\n', ...urls]);
    return r.stdout.trim().split('\n');
  };

  const answers = await burst('127.0.0.1', '/limited/x', 3);
  const refusedAt = Date.now();
  assert.deepEqual(answers.slice(0, 2).map((a) => a.split(' ')[0]), ['200', '200'], 'the burst passes');
  const [status, retryAfter, limit, remaining] = (answers[2] as string).split(' ');
  assert.equal(status, '429');
  assert.ok(Number(retryAfter) >= 1 && Number(retryAfter) <= 2, `Retry-After ${retryAfter}: the next token comes within 2 s at 0.5 rps`);
  assert.equal(limit, '2');
  assert.equal(remaining, '0');
  assert.match(await p.proxy.metrics.registry.metrics(), /portcullis_rate_limited_total\{site="api\.test",route="\/limited\/"\} 1/);

  assert.deepEqual((await burst('127.0.0.3', '/limited/x', 2)).map((a) => a.split(' ')[0]), ['200', '200'], 'another client has its own bucket');
  assert.deepEqual((await burst('127.0.0.1', '/generous/x', 3)).map((a) => a.split(' ')[0]), ['200', '200', '200'], "a route's own rateLimit replaces the site's");

  const [k1, k2] = [newApiKey(), newApiKey()];
  const record = (k: ReturnType<typeof newApiKey>) => ({ id: k.id, name: 'rate', hash: k.hash, routes: null, createdAt: new Date().toISOString(), expiresAt: null, revokedAt: null, bindCert: null, bindUri: null, rotatedTo: null });
  p.proxy.setApiKeys([record(k1), record(k2)]);
  assert.deepEqual((await burst('127.0.0.4', '/keyed/x', 2, k1.key)).map((a) => a.split(' ')[0]), ['200', '429'], 'one bucket per API key');
  assert.deepEqual((await burst('127.0.0.4', '/keyed/x', 1, k2.key)).map((a) => a.split(' ')[0]), ['200'], 'another key from the same address has its own');

  // facts, not timing: a client that waits the Retry-After it was given gets through again
  await untilPast(refusedAt + Number(retryAfter) * 1000);
  assert.equal((await burst('127.0.0.1', '/limited/x', 1))[0]?.split(' ')[0], '200', 'recovered');
});
