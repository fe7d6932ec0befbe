import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { loadConfigFile } from '../../src/config/index.js';
import { TestPki } from '../helpers/pki.js';
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
