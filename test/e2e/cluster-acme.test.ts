import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { startInstance } from '../helpers/cli-logs.js';
import { run } from '../helpers/clients.js';
import { freePort, startPebble } from '../helpers/pebble.js';
import { TestPki } from '../helpers/pki.js';
import { tempDir, type Scope } from '../helpers/proxy.js';
import { startRedis } from '../helpers/redis.js';

const pki = new TestPki();
after(() => pki.cleanup());
const root = pki.root('cluster-acme-root');
const leaf = pki.leaf('api', root, { dns: ['api.test'] });

/** An ACME site for `host` (http-01 against pebble). */
const acmeSite = (host: string, acme: { directory: string; caFile: string }) => `  - hosts: [${host}]
    certificates: [{ acme: { email: ops@example.test, directory: "${acme.directory}", ca: ${acme.caFile}, challenge: http-01 } }]
    routes: [{ path: /, upstream: "builtin:whoami" }]`;
const fileSite = `  - hosts: [api.test]
    certificates: [{ cert: ${leaf.chainFile}, key: ${leaf.keyFile} }]
    routes: [{ path: /, upstream: "builtin:whoami" }]`;

/** One instance of the cluster on `redisUrl`, with its own dataDir and ports (HTTPS `https`, plain HTTP `http`), serving `sites`. */
async function member(t: Scope, redisUrl: string, ports: { https: number; http: number }, sites: readonly string[]) {
  const dir = tempDir(t);
  const file = join(dir, 'portcullis.yaml');
  writeFileSync(
    file,
    `dataDir: state
listen: { https: "127.0.0.1:${ports.https}", http: "127.0.0.1:${ports.http}" }
log: { access: off }
timeouts: { drain: 2s }
state: { backend: redis, redis: "${redisUrl}" }
sites:
${sites.join('\n')}
`,
  );
  return { ...(await startInstance(t, dir, file)), dir };
}

/** The certificate an instance serves for `name`, verified against pebble's root. */
async function served(port: number, rootFile: string, name = 'acme.test'): Promise<X509Certificate> {
  const r = await run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', name, '-CAfile', rootFile, '-verify_return_error', '-verify_hostname', name], 'Q\n');
  assert.match(r.stdout, /Verify return code: 0 \(ok\)/, `port ${port}: ${r.stdout.slice(-400)}${r.stderr}`);
  return new X509Certificate(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/.exec(r.stdout)?.[0] as string);
}

const count = (text: string, pattern: RegExp) => text.match(new RegExp(pattern.source, 'g'))?.length ?? 0;

describe('ACME in a cluster on redis', () => {
  test('two instances racing for one certificate make one order on one account, the challenge is answered by a third, and all serve it; one joining later serves it at once and orders on the same account', async (t) => {
    const redis = await startRedis(t);
    // pebble validates http-01 on C's plain-HTTP port only: whichever of A and B orders, C must answer its challenge
    const answerer = { https: await freePort(), http: await freePort() };
    const pebble = await startPebble(t, { httpPort: answerer.http, tlsPort: answerer.https, certificateValidityPeriod: 3600 });
    const rootFile = join(tempDir(t), 'pebble-root.pem');
    writeFileSync(rootFile, await pebble.rootPem());
    const acme = { directory: pebble.directory, caFile: pebble.caFile };
    await member(t, redis.url, answerer, [fileSite]);

    const racers = await Promise.all([0, 1].map(async () => member(t, redis.url, { https: await freePort(), http: await freePort() }, [acmeSite('acme.test', acme)])));
    for (const { cli } of racers) await cli.waitFor(/"event":"reloaded","trigger":"acme certificate issued"/, 60_000);
    const logs = racers.map(({ cli }) => cli.stderr);
    assert.equal(logs.reduce((n, l) => n + count(l, /"event":"acme_order_started"/), 0), 1, 'one of the two ordered');
    assert.equal(logs.reduce((n, l) => n + count(l, /"event":"acme_order_succeeded"/), 0), 1);
    assert.equal(count(pebble.output(), /Added order/), 1, `pebble saw one order:\n${pebble.output()}`);

    const [a, b] = (await Promise.all(racers.map(({ port }) => served(port, rootFile)))) as [X509Certificate, X509Certificate];
    assert.equal(a.serialNumber, b.serialNumber, 'both serve the one certificate');
    assert.equal(a.subjectAltName, 'DNS:acme.test');

    // a member started now takes the certificate from the cluster before its first load and serves it without ordering;
    // its own new site is ordered on the cluster's account
    const late = await member(t, redis.url, { https: await freePort(), http: await freePort() }, [acmeSite('acme.test', acme), acmeSite('late.test', acme)]);
    assert.equal((await served(late.port, rootFile)).serialNumber, a.serialNumber);
    await late.cli.waitFor(/"event":"acme_renewal_scheduled","site":"acme\.test"/);
    assert.doesNotMatch(late.cli.stderr, /"event":"acme_order_started","site":"acme\.test"/);
    await late.cli.waitFor(/"event":"acme_order_succeeded","site":"late\.test"/, 60_000);
    assert.equal(count(pebble.output(), /Added order/), 2, 'the racer that waited never ordered afterwards');
    assert.equal(racers.reduce((n, { cli }) => n + count(cli.stderr, /"event":"acme_order_started"/), 0), 1);
    assert.match(pebble.output(), /There are now 1 accounts in memory/);
    assert.doesNotMatch(pebble.output(), /There are now 2 accounts/, 'one ACME account for the cluster');
  });
});
