import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, describe, test } from 'node:test';
import { provisionCertificates } from '../../src/config/provision-certificates.js';
import { acmeCertificateFiles } from '../../src/state/index.js';
import { provisionContextIn, rawSite, type TestContext } from '../helpers/provision.js';
import { TestPki, type Leaf } from '../helpers/pki.js';

const pki = new TestPki();
after(() => pki.cleanup());
const root = pki.root('acme-root');
const day = 86_400_000;
const both = pki.leaf('acme-both', root, { dns: ['a.test', 'b.test'] });
const aOnly = pki.leaf('acme-a-only', root, { dns: ['a.test'] });
const expired = pki.leaf('acme-expired', root, { dns: ['a.test', 'b.test'], notBefore: new Date(Date.now() - 90 * day), notAfter: new Date(Date.now() - day) });
const directory = 'https://ca.test/directory';

/** The certificates of a site with one acme entry (`acme` merged into email and directory), or `entries` as given. */
const acmeCertificates = (acme: object = {}, entries?: object[]) => rawSite({ hosts: ['a.test'], certificates: entries ?? [{ acme: { email: 'ops@example.test', directory, ...acme } }] }).certificates;

/** Stores a certificate where ACME keeps the one issued for the site whose first host is a.test. */
function stored(ctx: TestContext, leaf: Leaf): string {
  const files = acmeCertificateFiles(ctx.dataDir, 'a.test');
  mkdirSync(dirname(files.certFile), { recursive: true });
  copyFileSync(leaf.chainFile, files.certFile);
  copyFileSync(leaf.keyFile, files.keyFile);
  return files.certFile;
}

describe('provisionCertificates with an acme source', () => {
  test('without a stored certificate the site is pending: no certificate, the source names every host', (t) => {
    const ctx = provisionContextIn(t);
    const result = provisionCertificates(acmeCertificates({ challenge: 'tls-alpn-01' }), ['a.test', 'b.test'], 'sites[0]', ctx);
    assert.deepEqual(ctx.issues, []);
    assert.deepEqual(result.certificates, []);
    assert.deepEqual(result.acme, { email: 'ops@example.test', directory, caPem: null, challenge: 'tls-alpn-01', names: ['a.test', 'b.test'], storedProblem: null });
  });

  test('http-01 is accepted when the plain-HTTP listener is configured, and is the default', (t) => {
    const ctx = provisionContextIn(t, { hasHttpListener: true });
    const result = provisionCertificates(acmeCertificates(), ['a.test'], 'sites[0]', ctx);
    assert.deepEqual(ctx.issues, []);
    assert.equal(result.acme?.challenge, 'http-01');
  });

  test('serves the stored certificate when it covers every host', (t) => {
    const ctx = provisionContextIn(t);
    const certFile = stored(ctx, both);
    const result = provisionCertificates(acmeCertificates({ challenge: 'tls-alpn-01' }), ['a.test', 'b.test'], 'sites[0]', ctx);
    assert.deepEqual(ctx.issues, []);
    assert.deepEqual(result.certificates.map((c) => c.certFile), [certFile]);
    assert.equal(result.acme?.storedProblem, null);
  });

  test('does not serve a stored certificate that misses a host, says why, and is no config issue', (t) => {
    const ctx = provisionContextIn(t);
    stored(ctx, aOnly);
    const result = provisionCertificates(acmeCertificates({ challenge: 'tls-alpn-01' }), ['a.test', 'b.test'], 'sites[0]', ctx);
    assert.deepEqual(ctx.issues, []);
    assert.deepEqual(result.certificates, []);
    assert.equal(result.acme?.storedProblem, 'the stored certificate does not cover b.test');
  });

  test('does not serve a stored certificate that expired while the instance was down, and still starts', (t) => {
    const ctx = provisionContextIn(t);
    const certFile = stored(ctx, expired);
    const result = provisionCertificates(acmeCertificates({ challenge: 'tls-alpn-01' }), ['a.test', 'b.test'], 'sites[0]', ctx);
    assert.deepEqual(ctx.issues, []);
    assert.deepEqual(result.certificates, []);
    assert.match(result.acme?.storedProblem ?? '', new RegExp(`^certificate ${certFile} expired on .*; renew it$`));
  });

  test('trusts acme.ca for the directory: the file is kept whole as caPem', (t) => {
    const ctx = provisionContextIn(t);
    copyFileSync(root.certFile, join(ctx.dir, 'acme-ca.pem'));
    const result = provisionCertificates(acmeCertificates({ challenge: 'tls-alpn-01', ca: 'acme-ca.pem' }), ['a.test'], 'sites[0]', ctx);
    assert.deepEqual(ctx.issues, []);
    assert.equal(result.acme?.caPem, readFileSync(root.certFile, 'utf8'));
  });

  const cases: { name: string; certificates: ReturnType<typeof acmeCertificates>; hosts?: string[]; path: string; message: (ctx: TestContext) => string }[] = [
    {
      name: 'another entry beside the acme source',
      certificates: acmeCertificates({}, [{ cert: 'a.pem', key: 'a.key' }, { acme: { email: 'ops@example.test', directory, challenge: 'tls-alpn-01' } }]),
      path: 'sites[1].certificates[1]',
      message: () => "an acme source is the site's only certificate source; remove the other entries (or give those hosts their own site)",
    },
    {
      name: 'cert: in the acme entry',
      certificates: acmeCertificates({}, [{ cert: 'a.pem', acme: { email: 'ops@example.test', directory, challenge: 'tls-alpn-01' } }]),
      path: 'sites[1].certificates[0]',
      message: () => "an acme source is the site's only certificate source; remove the other entries (or give those hosts their own site)",
    },
    {
      name: 'a wildcard host',
      certificates: acmeCertificates({ challenge: 'tls-alpn-01' }),
      hosts: ['a.test', '*.a.test'],
      path: 'sites[1].certificates[0].acme',
      message: () => 'ACME needs the dns-01 challenge for *.a.test, which Portcullis does not answer; list the names without wildcards, or serve them from files or internal: true in another site',
    },
    {
      name: 'http-01 without the plain-HTTP listener',
      certificates: acmeCertificates({ challenge: 'http-01' }),
      path: 'sites[1].certificates[0].acme.challenge',
      message: () => 'http-01 is answered by the plain-HTTP listener on port 80, which is not configured; add listen: {http: "0.0.0.0:80"} or use challenge: tls-alpn-01',
    },
    {
      name: 'an acme.ca file that does not exist',
      certificates: acmeCertificates({ challenge: 'tls-alpn-01', ca: 'missing-ca.pem' }),
      path: 'sites[1].certificates[0].acme.ca',
      message: (ctx) => `cannot read ${join(ctx.dir, 'missing-ca.pem')} (ENOENT); give the PEM CA certificate that signs the ACME server's own TLS certificate`,
    },
    {
      name: 'an acme.ca file without a certificate',
      certificates: acmeCertificates({ challenge: 'tls-alpn-01', ca: 'empty-ca.pem' }),
      path: 'sites[1].certificates[0].acme.ca',
      message: (ctx) => `${join(ctx.dir, 'empty-ca.pem')} holds no PEM certificate; give the CA certificate of the ACME server's TLS in PEM`,
    },
  ];
  for (const c of cases) {
    test(`reports ${c.name}, and gives the site neither certificate nor source`, (t) => {
      const ctx = provisionContextIn(t);
      writeFileSync(join(ctx.dir, 'empty-ca.pem'), '# nothing here\n');
      stored(ctx, both);
      const result = provisionCertificates(c.certificates, c.hosts ?? ['a.test'], 'sites[1]', ctx);
      assert.deepEqual(ctx.issues, [{ path: c.path, message: c.message(ctx) }]);
      assert.deepEqual(result, { certificates: [], acme: null });
    });
  }
});
