import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { curl, resolveTo } from '../helpers/clients.js';
import { runCli } from '../helpers/cli-process.js';
import { startMember } from '../helpers/cluster.js';
import { TestPki } from '../helpers/pki.js';
import { startRedis } from '../helpers/redis.js';

/*
 * The client certificate inventory and the weak-client summary in a cluster:
 * every process copies its summaries to Redis, and the reports run against
 * any instance's config show what the whole cluster saw.
 */

const pki = new TestPki();
after(() => pki.cleanup());

describe('inventories shared by the cluster', () => {
  test("portcullis clients and report weak-clients run against A's config show the client only B (two workers) saw", async (t) => {
    const root = pki.root('inventory-root');
    const server = pki.leaf('inventory-server', root, { dns: ['api.test'] });
    const client = pki.leaf('inventory-client', root, { eku: 'clientAuth' });
    const redis = await startRedis(t);
    const siteExtra = `\n    clientAuth: { mode: require, ca: [${root.certFile}] }`;
    const a = await startMember(t, redis.url, server, { siteExtra });
    const b = await startMember(t, redis.url, server, { siteExtra, body: 'workers: 2' });

    // one TLS 1.2-only connection to B, with a client certificate: an inventory entry and a weak client
    const r = await curl([...resolveTo('api.test', b.port), '--cacert', root.certFile, '--cert', client.chainFile, '--key', client.keyFile, '--tls-max', '1.2', '-o', '/dev/null', '-w', '%{http_code}', `https://api.test:${b.port}/`]);
    assert.equal(r.stdout, '200', r.stderr);
    const fingerprint = new X509Certificate(readFileSync(client.certFile)).fingerprint256;

    const configA = join(a.dir, 'portcullis.yaml');
    const clients = await runCli(['clients', '--config', configA, '--json'], 60_000);
    assert.equal(clients.code, 0, clients.stderr);
    const seen = JSON.parse(clients.stdout) as { fingerprint: string; subject: string; count: number }[];
    assert.equal(seen.length, 1, clients.stdout);
    assert.equal(seen[0]?.fingerprint, `sha256:${fingerprint}`);
    assert.match(seen[0]?.subject ?? '', /CN=inventory-client/);
    assert.equal(seen[0]?.count, 1, 'counted once: one connection, to one of B\'s workers');
    assert.equal(clients.stderr, '', 'every process answered the flush request');

    const report = await runCli(['report', 'weak-clients', '--config', configA, '--json'], 60_000);
    assert.equal(report.code, 0, report.stderr);
    const weak = (JSON.parse(report.stdout) as { weakness: string; offered: string; count: number }[]).filter((e) => e.weakness === 'no_tls13');
    assert.deepEqual(weak.map((e) => [e.offered, e.count]), [['TLSv1.2', 1]]);

    // A's own files know nothing of it: what the reports showed came from B, through Redis
    await redis.kill();
    const withoutRedis = await runCli(['clients', '--config', configA, '--json'], 60_000);
    assert.equal(withoutRedis.code, 0, withoutRedis.stderr);
    assert.deepEqual(JSON.parse(withoutRedis.stdout), []);
    assert.match(withoutRedis.stderr, /did not answer/);
    assert.match(withoutRedis.stderr, /showing the summaries of dataDir .* only/);
  });
});
