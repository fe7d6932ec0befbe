import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { readCertificateBundle } from '../../src/config/certificate-bundle.js';
import { provisionContextIn } from '../helpers/provision.js';
import { TestPki } from '../helpers/pki.js';

const pki = new TestPki();
after(() => pki.cleanup());
const root = pki.root('bundle-root');
const intermediate = pki.intermediate('bundle-intermediate', root);
const rootPem = readFileSync(root.certFile, 'utf8');
const intermediatePem = readFileSync(intermediate.certFile, 'utf8');
const keyPem = readFileSync(root.keyFile, 'utf8');
// the base64 of the root with one line replaced: still PEM, no longer DER
const corruptPem = rootPem.replace(/\n[A-Za-z0-9+/]{64}\n/, '\n' + 'A'.repeat(64) + '\n');
const hint = { unreadable: 'the test CA file', empty: 'the test CA in PEM' };
const fingerprint = (pem: string) => new X509Certificate(pem).fingerprint256;

describe('readCertificateBundle', () => {
  test('reads every certificate of a bundle in file order, with the whole text, and reports nothing', (t) => {
    const ctx = provisionContextIn(t);
    writeFileSync(join(ctx.dir, 'bundle.pem'), `subject=bundle-intermediate\n${intermediatePem}${rootPem}`);
    const bundle = readCertificateBundle(ctx, 'x.ca', 'bundle.pem', hint);
    assert.deepEqual(ctx.issues, []);
    assert.equal(bundle.file, join(ctx.dir, 'bundle.pem'));
    assert.equal(bundle.text, `subject=bundle-intermediate\n${intermediatePem}${rootPem}`);
    assert.deepEqual(bundle.certificates.map((c) => c.cert.fingerprint256), [fingerprint(intermediatePem), fingerprint(rootPem)]);
    assert.deepEqual(bundle.certificates.map((c) => fingerprint(c.pem)), [fingerprint(intermediatePem), fingerprint(rootPem)]);
    assert.equal(bundle.complete, true);
  });

  test('skips blocks that are not certificates', (t) => {
    const ctx = provisionContextIn(t);
    writeFileSync(join(ctx.dir, 'mixed.pem'), keyPem + rootPem);
    const bundle = readCertificateBundle(ctx, 'x.ca', 'mixed.pem', hint);
    assert.deepEqual(ctx.issues, []);
    assert.deepEqual(bundle.certificates.map((c) => c.cert.fingerprint256), [fingerprint(rootPem)]);
    assert.equal(bundle.complete, true);
  });

  test('keeps the certificates that decode beside one that does not, and is then incomplete', (t) => {
    const ctx = provisionContextIn(t);
    const file = join(ctx.dir, 'half.pem');
    writeFileSync(file, intermediatePem + corruptPem);
    const bundle = readCertificateBundle(ctx, 'x.ca', 'half.pem', hint);
    assert.deepEqual(bundle.certificates.map((c) => c.cert.fingerprint256), [fingerprint(intermediatePem)]);
    assert.equal(bundle.complete, false);
    assert.equal(ctx.issues.length, 1);
    assert.equal(ctx.issues[0]!.path, 'x.ca');
    assert.match(ctx.issues[0]!.message, new RegExp(`^certificate #2 in ${file} .*; write the file again from its source$`));
  });

  const cases: { name: string; write: (dir: string) => string; message: (file: string) => string | RegExp }[] = [
    { name: 'a file that does not exist', write: (dir) => join(dir, 'missing.pem'), message: (f) => `cannot read ${f} (ENOENT); give the test CA file` },
    {
      name: 'a folder',
      write: (dir) => {
        mkdirSync(join(dir, 'folder.pem'));
        return join(dir, 'folder.pem');
      },
      message: (f) => `cannot read ${f} (EISDIR); give the test CA file`,
    },
    { name: 'an empty file', write: (dir) => written(join(dir, 'empty.pem'), ''), message: (f) => `${f} holds no PEM certificate; give the test CA in PEM` },
    { name: 'a file with a private key only', write: (dir) => written(join(dir, 'key.pem'), keyPem), message: (f) => `${f} holds no PEM certificate; give the test CA in PEM` },
    {
      name: 'a file cut off inside its only certificate',
      write: (dir) => written(join(dir, 'cut.pem'), rootPem.slice(0, rootPem.length / 2)),
      message: (f) => `${f} holds no PEM certificate, only the start of one ("-----BEGIN CERTIFICATE-----" without its "-----END CERTIFICATE-----" line): the file is truncated; write the whole file again`,
    },
    {
      name: 'a file cut off inside its second certificate',
      write: (dir) => written(join(dir, 'cut2.pem'), intermediatePem + rootPem.slice(0, rootPem.length / 2)),
      message: (f) => `${f} ends inside certificate #2 ("-----BEGIN CERTIFICATE-----" without its "-----END CERTIFICATE-----" line): the file is truncated; write the whole file again`,
    },
    { name: 'a certificate that does not decode', write: (dir) => written(join(dir, 'corrupt.pem'), corruptPem), message: (f) => new RegExp(`^certificate #1 in ${f} .*; write the file again from its source$`) },
  ];
  for (const c of cases) {
    test(`reports ${c.name} at the given path, with what the file should hold, and returns no certificate`, (t) => {
      const ctx = provisionContextIn(t);
      const file = c.write(ctx.dir);
      const bundle = readCertificateBundle(ctx, 'sites[2].clientAuth.ca[1]', file, hint);
      assert.equal(ctx.issues.length, 1, JSON.stringify(ctx.issues));
      assert.equal(ctx.issues[0]!.path, 'sites[2].clientAuth.ca[1]');
      const expected = c.message(file);
      if (typeof expected === 'string') assert.equal(ctx.issues[0]!.message, expected);
      else assert.match(ctx.issues[0]!.message, expected);
      assert.deepEqual(bundle.certificates, []);
      assert.equal(bundle.complete, false);
    });
  }
});

function written(file: string, text: string): string {
  writeFileSync(file, text);
  return file;
}
