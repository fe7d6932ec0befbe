import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, describe, test } from 'node:test';
import { provisionCertificates } from '../../src/config/provision-certificates.js';
import { internalCertificateFiles } from '../../src/state/index.js';
import { provisionContextIn, rawSite, type TestContext } from '../helpers/provision.js';
import { TestPki } from '../helpers/pki.js';

const pki = new TestPki();
after(() => pki.cleanup());
const root = pki.root('certificates-root');
const ecdsa = pki.leaf('ecdsa', root, { dns: ['api.test', '*.api.test'] });
const rsa = pki.leaf('rsa', root, { dns: ['api.test'], key: 'rsa' });
const otherEcdsa = pki.leaf('other-ecdsa', root, { dns: ['api.test'] });
const wwwOnly = pki.leaf('www-only', root, { dns: ['www.test'] });

const certificatesOf = (entries: object[]) => rawSite({ certificates: entries }).certificates;

/** Copies a leaf's chain and key into the context's folder, as relative names. */
function copied(ctx: TestContext, leaf: { chainFile: string; keyFile: string }, name: string): { cert: string; key: string } {
  copyFileSync(leaf.chainFile, join(ctx.dir, `${name}.pem`));
  copyFileSync(leaf.keyFile, join(ctx.dir, `${name}.key`));
  return { cert: `${name}.pem`, key: `${name}.key` };
}

describe('provisionCertificates from files and the built-in CA', () => {
  test('reads one ECDSA and one RSA pair, paths resolved against the config folder', (t) => {
    const ctx = provisionContextIn(t);
    const result = provisionCertificates(certificatesOf([copied(ctx, ecdsa, 'ec'), { cert: rsa.chainFile, key: rsa.keyFile }]), ['api.test', 'x.api.test'], 'sites[0]', ctx);
    assert.deepEqual(ctx.issues, []);
    assert.equal(result.acme, null);
    assert.deepEqual(result.certificates.map((c) => c.keyDescription), ['ECDSA P-256', 'RSA 2048']);
    assert.deepEqual(result.certificates.map((c) => c.certFile), [join(ctx.dir, 'ec.pem'), rsa.chainFile]);
    assert.equal(result.certificates[0]!.keyFile, join(ctx.dir, 'ec.key'));
  });

  test('serves the certificate the built-in CA issued for internal: true, found under dataDir by the first host', (t) => {
    const ctx = provisionContextIn(t);
    const files = internalCertificateFiles(ctx.dataDir, 'api.test');
    mkdirSync(dirname(files.certFile), { recursive: true });
    copyFileSync(ecdsa.chainFile, files.certFile);
    copyFileSync(ecdsa.keyFile, files.keyFile);
    const result = provisionCertificates(certificatesOf([{ internal: true }]), ['api.test'], 'sites[0]', ctx);
    assert.deepEqual(ctx.issues, []);
    assert.equal(ctx.dataDir, join(ctx.dir, '.portcullis'));
    assert.deepEqual(result.certificates.map((c) => c.certFile), [files.certFile]);
  });

  const cases: { name: string; entries: (ctx: TestContext) => object[]; hosts?: string[]; path: string; message: (ctx: TestContext) => string | RegExp }[] = [
    {
      name: 'internal: true before the built-in CA issued it',
      entries: () => [{ internal: true }],
      path: 'sites[3].certificates[0].internal',
      message: (ctx) => `the built-in CA has not issued ${join(ctx.dir, '.portcullis', 'internal', 'api.test.pem')} yet; portcullis start issues it (portcullis validate does not)`,
    },
    { name: 'internal: true beside cert:', entries: () => [{ internal: true, cert: 'a.pem' }], path: 'sites[3].certificates[0]', message: () => 'give either internal: true or cert: and key:, not both' },
    { name: 'a cert without its key', entries: () => [{ cert: 'a.pem' }], path: 'sites[3].certificates[0]', message: () => 'give both cert: (PEM chain, leaf first) and key: (PEM private key); key is missing' },
    { name: 'a key without its cert', entries: () => [{ key: 'a.key' }], path: 'sites[3].certificates[0]', message: () => 'give both cert: (PEM chain, leaf first) and key: (PEM private key); cert is missing' },
    {
      name: 'a certificate file that does not exist',
      entries: () => [{ cert: 'missing.pem', key: ecdsa.keyFile }],
      path: 'sites[3].certificates[0].cert',
      message: (ctx) => `file ${join(ctx.dir, 'missing.pem')} does not exist; check the path (relative paths start at the config file's folder)`,
    },
    {
      name: 'a key of another certificate',
      entries: () => [{ cert: ecdsa.chainFile, key: rsa.keyFile }],
      path: 'sites[3].certificates[0].key',
      message: () => `key does not match certificate ${ecdsa.chainFile} (certificate is ECDSA P-256, key is RSA 2048); point key: at the matching private key`,
    },
    {
      name: 'a second ECDSA certificate',
      entries: () => [{ cert: ecdsa.chainFile, key: ecdsa.keyFile }, { cert: otherEcdsa.chainFile, key: otherEcdsa.keyFile }],
      path: 'sites[3].certificates[1]',
      message: () => `the site already has a ECDSA P-256 certificate (${ecdsa.chainFile}); list at most one ECDSA and one RSA certificate per site`,
    },
    {
      name: 'a host no certificate covers',
      entries: () => [{ cert: rsa.chainFile, key: rsa.keyFile }],
      hosts: ['api.test', 'www.test'],
      path: 'sites[3].hosts[1]',
      message: () => 'no certificate of this site covers "www.test" (they cover DNS:api.test); add the name to a certificate or remove the host',
    },
  ];
  for (const c of cases) {
    test(`reports ${c.name}, and leaves the entry out`, (t) => {
      const ctx = provisionContextIn(t);
      const entries = c.entries(ctx);
      const result = provisionCertificates(certificatesOf(entries), c.hosts ?? ['api.test'], 'sites[3]', ctx);
      assert.equal(ctx.issues.length, 1, JSON.stringify(ctx.issues));
      assert.equal(ctx.issues[0]!.path, c.path);
      const expected = c.message(ctx);
      if (typeof expected === 'string') assert.equal(ctx.issues[0]!.message, expected);
      else assert.match(ctx.issues[0]!.message, expected);
      // only a host left uncovered keeps every entry
      assert.equal(result.certificates.length, c.path.includes('.hosts[') ? entries.length : entries.length - 1);
    });
  }

  test('does not report hosts as uncovered when an entry has an issue of its own', (t) => {
    const ctx = provisionContextIn(t);
    provisionCertificates(certificatesOf([{ cert: wwwOnly.chainFile, key: 'missing.key' }]), ['api.test'], 'sites[0]', ctx);
    assert.deepEqual(ctx.issues.map((i) => i.path), ['sites[0].certificates[0].key']);
  });
});
