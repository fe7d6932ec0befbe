import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { curl, resolveTo, run } from '../helpers/clients.js';
import { TestPki } from '../helpers/pki.js';
import { startProxy } from '../helpers/proxy.js';

const pki = new TestPki();
after(() => pki.cleanup());

test('ipAccess: a globally denied source is closed at accept with no TLS handshake; a site list refuses its ClientHello; everyone else is served', async (t) => {
  const root = pki.root('ip-root');
  const open = pki.leaf('ip-open', root, { dns: ['open.test'] });
  const closed = pki.leaf('ip-closed', root, { dns: ['closed.test'] });
  const p = await startProxy(
    t,
    `listen: { https: "127.0.0.1:0" }
log: { access: off }
ipAccess: { deny: ["127.0.0.2", "2001:db8::/32"] }
sites:
  - hosts: [open.test]
    certificates: [{ cert: ${open.chainFile}, key: ${open.keyFile} }]
    routes: [{ path: /, upstream: "builtin:whoami" }]
  - hosts: [closed.test]
    certificates: [{ cert: ${closed.chainFile}, key: ${closed.keyFile} }]
    ipAccess: { allow: ["127.0.0.1/32"] }
    routes: [{ path: /, upstream: "builtin:whoami" }]
`,
  );
  const sClientFrom = (source: string, name: string) => run('openssl', ['s_client', '-connect', `127.0.0.1:${p.port}`, '-bind', `${source}:0`, '-servername', name, '-brief'], '', 15_000);
  const get = (source: string, name: string) => curl([...resolveTo(name, p.port), '--interface', source, '--cacert', root.certFile, '-o', '/dev/null', '-w', '%{http_code}', `https://${name}:${p.port}/`]);

  const denied = await sClientFrom('127.0.0.2', 'open.test');
  const deniedText = denied.stdout + denied.stderr;
  assert.doesNotMatch(deniedText, /CONNECTION ESTABLISHED|Peer certificate|Protocol version/, 'no handshake: no certificate was seen');
  let metrics = await p.proxy.metrics.registry.metrics();
  assert.match(metrics, /portcullis_connections_refused_total\{reason="ip_denied"\} 1/);
  assert.doesNotMatch(metrics, /portcullis_handshakes_total\{/, 'and no handshake completed');

  assert.equal((await get('127.0.0.1', 'open.test')).stdout, '200');
  assert.equal((await get('127.0.0.3', 'open.test')).stdout, '200', 'a site without lists serves every admitted source');
  assert.equal((await get('127.0.0.1', 'closed.test')).stdout, '200', 'the site admits its allow-list');
  const outside = await sClientFrom('127.0.0.3', 'closed.test');
  assert.doesNotMatch(outside.stdout + outside.stderr, /CONNECTION ESTABLISHED|Peer certificate/, 'refused before TLS: no certificate of the site was sent');
  metrics = await p.proxy.metrics.registry.metrics();
  assert.match(metrics, /portcullis_connections_refused_total\{reason="ip_denied"\} 2/);
});
