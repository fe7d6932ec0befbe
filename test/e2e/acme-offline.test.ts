import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { startCli } from '../helpers/cli-process.js';
import { curl, resolveTo, run } from '../helpers/clients.js';
import { TestPki } from '../helpers/pki.js';
import { tempDir } from '../helpers/proxy.js';

const day = 86_400_000;

/** A config whose ACME CA is not there: a closed port on loopback. */
function config(dir: string): string {
  const file = join(dir, 'portcullis.yaml');
  writeFileSync(
    file,
    `dataDir: state
listen: { https: "127.0.0.1:0", http: "127.0.0.1:0" }
sites:
  - hosts: [acme.test]
    certificates: [{ acme: { email: ops@example.test, directory: "https://127.0.0.1:1/dir" } }]
    routes: [{ path: /, upstream: "builtin:whoami" }]
  - hosts: [other.test]
    certificates: [{ internal: true }]
    routes: [{ path: /, upstream: "builtin:whoami" }]
`,
  );
  return file;
}

describe('ACME without a reachable CA', () => {
  test('the pending site refuses handshakes with certificate_pending while the other site serves; failed orders back off', async (t) => {
    const dir = tempDir(t);
    const cli = startCli(t, ['start', '--config', config(dir)], dir);
    const port = Number((await cli.waitFor(/"https":"127\.0\.0\.1:(\d+)"/))[1]);
    const pending = await run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'acme.test'], 'Q\n');
    assert.doesNotMatch(pending.stdout, /BEGIN CERTIFICATE/, 'no TLS for a site without a certificate');
    await cli.waitFor(/"event":"handshake_failed","reason":"certificate_pending"[^\n]*"site":"acme\.test"[^\n]*"why":"the ACME certificate is not issued yet"/);
    const other = await curl([...resolveTo('other.test', port), '--cacert', join(dir, 'state', 'ca', 'ca.pem'), '-w', '%{http_code}', '-o', '/dev/null', `https://other.test:${port}/`]);
    assert.equal(other.stdout, '200');

    const first = await cli.waitFor(/"event":"acme_order_failed","site":"acme\.test","problemType":"unreachable"[^\n]*"attempt":1,"retryInMs":(\d+)/);
    const second = await cli.waitFor(/"event":"acme_order_failed","site":"acme\.test","problemType":"unreachable"[^\n]*"attempt":2,"retryInMs":(\d+)/, 30_000);
    assert.ok(Number(second[1]) > Number(first[1]), `the second wait (${second[1]} ms) is longer than the first (${first[1]} ms)`);
  });

  test('a stored certificate due for renewal keeps serving while the CA is unreachable', async (t) => {
    const dir = tempDir(t);
    const pki = new TestPki();
    t.after(() => pki.cleanup());
    const root = pki.root('stored-root');
    // six days of life, one left: past the renewal point (a third left), still valid
    const leaf = pki.leaf('acme', root, { dns: ['acme.test'], notBefore: new Date(Date.now() - 5 * day), notAfter: new Date(Date.now() + day) });
    const stored = join(dir, 'state', 'acme', 'certificates');
    mkdirSync(stored, { recursive: true });
    copyFileSync(leaf.chainFile, join(stored, 'acme.test.pem'));
    copyFileSync(leaf.keyFile, join(stored, 'acme.test.key'));

    const cli = startCli(t, ['start', '--config', config(dir)], dir);
    const port = Number((await cli.waitFor(/"https":"127\.0\.0\.1:(\d+)"/))[1]);
    await cli.waitFor(/"event":"acme_renewal_scheduled","site":"acme\.test"/);
    await cli.waitFor(/"event":"acme_order_failed","site":"acme\.test"[^\n]*"attempt":1/);
    const served = await run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'acme.test', '-CAfile', root.certFile, '-verify_return_error'], 'Q\n');
    assert.match(served.stdout, /Verify return code: 0 \(ok\)/, 'the stored certificate is served');
  });
});
