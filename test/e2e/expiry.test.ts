import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { loadConfigFile } from '../../src/config/index.js';
import { runCli } from '../helpers/cli-process.js';
import { curl, resolveTo } from '../helpers/clients.js';
import { TestPki, type Leaf } from '../helpers/pki.js';
import { startProxy } from '../helpers/proxy.js';

const pki = new TestPki();
after(() => pki.cleanup());
const day = 86_400_000;
const hour = 3_600_000;

test('warns once per threshold before a served certificate or a trusted client CA expires, and exports the seconds left', async (t) => {
  const root = pki.root('expiry-root');
  const server = pki.leaf('expiry-server', root, { dns: ['api.test'], notAfter: new Date(Date.now() + 10 * day + hour) });
  const fresh = pki.leaf('expiry-fresh', root, { dns: ['fresh.test'] });
  const clients = pki.intermediate('expiry-clients', root, { notAfter: new Date(Date.now() + 20 * day + hour) });
  const p = await startProxy(
    t,
    `
listen: { https: "127.0.0.1:0" }
sites:
  - hosts: [api.test]
    certificates: [{ cert: ${server.chainFile}, key: ${server.keyFile} }]
    clientAuth: { mode: optional, ca: [${root.certFile}, ${clients.certFile}] }
    routes: [{ path: /, upstream: "builtin:whoami" }]
  - hosts: [fresh.test]
    certificates: [{ cert: ${fresh.chainFile}, key: ${fresh.keyFile} }]
    routes: [{ path: /, upstream: "builtin:whoami" }]
`,
  );
  const warnings = () => p.logs.filter((l) => l.event === 'certificate_expiring');
  const served = warnings().find((l) => l.role === 'served') as Record<string, unknown>;
  assert.equal(served.site, 'api.test');
  assert.equal(served.daysLeft, 10);
  assert.equal(served.level, 40);
  assert.match(String(served.file), /expiry-server\.chain\.pem$/);
  const ca = warnings().find((l) => l.role === 'client_ca') as Record<string, unknown>;
  assert.equal(ca.daysLeft, 20);
  assert.match(String(ca.subject), /CN=expiry-clients/);
  assert.equal(warnings().length, 2, 'the certificate valid for 90 days and the 10-year root are not warned about');

  // the same certificates after a reload: nothing new to say
  await p.proxy.reload(loadConfigFile(`${p.dir}/portcullis.yaml`));
  assert.equal(warnings().length, 2);

  const metrics = await p.proxy.metrics.registry.metrics();
  const seconds = (role: string, site: string) =>
    [...metrics.matchAll(new RegExp(`portcullis_certificate_expiry_seconds\\{site="${site}",role="${role}",certificate="[0-9a-f]{16}"\\} (-?\\d+)`, 'g'))]
      .map((m) => Number(m[1]))
      .sort((a, b) => a - b);
  const near = (value: number | undefined, ms: number) => value !== undefined && Math.abs(value - ms / 1000) < 120;
  assert.ok(near(seconds('served', 'api.test')[0], 10 * day + hour));
  assert.ok((seconds('served', 'fresh.test')[0] as number) > 89 * 86_400);
  const cas = seconds('client_ca', 'api.test');
  assert.equal(cas.length, 2);
  assert.ok(near(cas[0], 20 * day + hour), 'the client intermediate');
  assert.ok((cas[1] as number) > 3000 * 86_400, 'the root');
});

test('keeps an inventory of client certificates, warns before one seen recently expires, and lists it with portcullis clients', async (t) => {
  const root = pki.root('inventory-root');
  const server = pki.leaf('inventory-server', root, { dns: ['api.test'] });
  const lapsing = pki.leaf('inventory-lapsing', root, { eku: 'clientAuth', subject: '/CN=partner-a/O=Partner', notAfter: new Date(Date.now() + 5 * day + hour) });
  const lasting = pki.leaf('inventory-lasting', root, { eku: 'clientAuth', subject: '/CN=partner-b/O=Partner' });
  const p = await startProxy(
    t,
    `
listen: { https: "127.0.0.1:0" }
sites:
  - hosts: [api.test]
    certificates: [{ cert: ${server.chainFile}, key: ${server.keyFile} }]
    clientAuth: { mode: require, ca: [${root.certFile}] }
    routes: [{ path: /, upstream: "builtin:whoami" }]
`,
  );
  const call = (leaf: Leaf) => curl([...resolveTo('api.test', p.port), '--cacert', root.certFile, '--cert', leaf.certFile, '--key', leaf.keyFile, '-o', '/dev/null', '-w', '%{http_code}', `https://api.test:${p.port}/`]);
  for (const leaf of [lapsing, lapsing, lasting]) assert.equal((await call(leaf)).stdout, '200');
  const warnings = p.logs.filter((l) => l.event === 'client_certificate_expiring');
  assert.equal(warnings.length, 1, 'one warning, for the certificate that lapses within the thresholds');
  assert.equal(warnings[0]?.subject, 'O=Partner,CN=partner-a');
  assert.equal(warnings[0]?.daysLeft, 5);
  await p.proxy.close(); // writes the inventory

  const config = `${p.dir}/portcullis.yaml`;
  const soon = await runCli(['clients', '--config', config, '--expiring', '7d', '--json']);
  assert.equal(soon.code, 0, soon.stderr);
  const listed = JSON.parse(soon.stdout) as { subject: string; count: number; serial: string; sites: string[] }[];
  assert.deepEqual(listed.map((e) => [e.subject, e.count, e.sites]), [['O=Partner,CN=partner-a', 2, ['api.test']]]);
  const all = await runCli(['clients', '--config', config]);
  assert.match(all.stdout, /partner-a[\s\S]*partner-b/, 'soonest expiry first');
  const bad = await runCli(['clients', '--config', config, '--expiring', 'soon']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--expiring soon is not a duration/);
});
