import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { before, describe, test } from 'node:test';
import { chromium } from 'playwright-core';
import { runtimeGroups } from '../../src/config/index.js';
import { TestPki, type Leaf } from '../helpers/pki.js';
import { startProxy, suiteScope, type RunningProxy } from '../helpers/proxy.js';

/** Debian's chromium package (scripts/install-test-deps.sh installs it). */
const executablePath = '/usr/bin/chromium';

/**
 * The browser Chromium headless, through playwright-core, trusting exactly
 * our test certificate's key (Chromium's SPKI pin flag: any other certificate
 * still fails), with the test name resolved to 127.0.0.1 inside the browser.
 */
describe('a browser through the proxy', () => {
  const scope = suiteScope();
  const pki = new TestPki();
  scope.after(() => pki.cleanup());
  let leaf: Leaf;
  let p: RunningProxy;

  before(async () => {
    const root = pki.root('browser-root');
    leaf = pki.leaf('browser', root, { dns: ['pq.test'] });
    p = await startProxy(
      scope,
      `listen: { https: "127.0.0.1:0" }
sites:
  - hosts: [pq.test]
    certificates: [{ cert: ${leaf.chainFile}, key: ${leaf.keyFile} }]
    routes: [{ path: /, upstream: "builtin:whoami" }]
`,
    );
  });

  test(`headless Chromium loads builtin:whoami over TLS 1.3 with ${runtimeGroups.postQuantum ? 'X25519MLKEM768' : 'X25519 (this runtime has no ML-KEM)'}, HSTS on the answer`, async (t) => {
    const spki = new X509Certificate(readFileSync(leaf.certFile)).publicKey.export({ type: 'spki', format: 'der' });
    const pin = createHash('sha256').update(spki).digest('base64');
    const browser = await chromium.launch({ executablePath, args: ['--host-resolver-rules=MAP pq.test 127.0.0.1', `--ignore-certificate-errors-spki-list=${pin}`] });
    t.after(() => browser.close());
    const page = await browser.newPage();
    const response = await page.goto(`https://pq.test:${p.port}/`);
    assert.ok(response, 'a response');
    assert.equal(response.status(), 200);
    assert.match(response.headers()['strict-transport-security'] ?? '', /^max-age=\d+/);
    assert.equal((await response.securityDetails())?.protocol, 'TLS 1.3');
    const whoami = JSON.parse(await response.text()) as { tls: { version: string; group: string } };
    assert.deepEqual(whoami.tls.version, 'TLSv1.3');
    assert.equal(whoami.tls.group, runtimeGroups.postQuantum ? 'X25519MLKEM768' : 'X25519');
    const accepted = p.logs.find((l) => l.event === 'connection_accepted' && l.postQuantum === true);
    assert.ok(accepted, 'the browser offered a post-quantum key share');
  });
});
