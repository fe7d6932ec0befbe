import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { buildPkcs12 } from '../../src/pki/pkcs12.js';
import { TestPki, type KeyType } from '../helpers/pki.js';

// Every check reads the bundle back with the openssl CLI (OpenSSL 3, default
// provider only: no -legacy), an implementation independent of pkijs.

const pki = new TestPki();
after(() => pki.cleanup());
const root = pki.root('p12-root');
const issuing = pki.intermediate('p12-issuing', root);
const rootPem = readFileSync(root.certFile, 'utf8');
const issuingPem = readFileSync(issuing.certFile, 'utf8');
const password = 'correct horse battery staple';

function openssl(args: string[], input?: string): string {
  return execFileSync('openssl', args, { input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
}

/** The SubjectPublicKeyInfo of a private or public key PEM, as openssl prints it. */
function publicKeyOf(keyPem: string): string {
  return openssl(['pkey', '-pubout'], keyPem);
}

function fingerprints(pem: string): string[] {
  return [...pem.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g)].map((m) => new X509Certificate(m[0]).fingerprint256);
}

function fingerprintOf(file: string): string {
  return new X509Certificate(readFileSync(file)).fingerprint256;
}

/** `openssl pkcs12 -in file <args>` with a password; stdout and stderr together, since -info prints to stderr. */
function readBundle(file: string, pass: string, args: string[]): { status: number | null; output: string } {
  const run = spawnSync('openssl', ['pkcs12', '-in', file, '-passin', `pass:${pass}`, ...args], { encoding: 'utf8' });
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

/** `openssl asn1parse` of the bundle, descending into the OCTET STRINGs at these offsets in turn. */
function asn1parse(file: string, strparse: number[]): string {
  return openssl(['asn1parse', '-inform', 'DER', '-in', file, ...strparse.flatMap((offset) => ['-strparse', String(offset)])]);
}

/** The offset of the content of the last pkcs7-data ContentInfo in a listing (the first OCTET STRING after its type). */
function dataContent(listing: string): number {
  const afterType = listing.slice(listing.lastIndexOf(':pkcs7-data'));
  const offset = /^\s*(\d+):d=\d+\s+hl=\d+\s+l=\s*\d+ prim: OCTET STRING/m.exec(afterType)?.[1];
  assert.ok(offset, listing);
  return Number(offset);
}

const keyTypes: [KeyType, string][] = [
  ['ec', 'an EC P-256 key'],
  ['rsa', 'an RSA 2048 key'],
];

for (const [keyType, described] of keyTypes) {
  describe(`a PKCS#12 bundle with ${described}`, () => {
    const leaf = pki.leaf(`p12-${keyType}`, issuing, { key: keyType, eku: 'clientAuth', dns: ['client.example.test'] });
    const keyPem = readFileSync(leaf.keyFile, 'utf8');
    const file = join(pki.dir, `${keyType}.p12`);
    before(async () => writeFileSync(file, await buildPkcs12({ keyPem, certPem: leaf.certPem, chainPems: [issuingPem, rootPem], password, friendlyName: `client ${keyType}` })));

    test('gives openssl back the same private key without the legacy provider', () => {
      const read = readBundle(file, password, ['-nocerts', '-nodes']);
      assert.equal(read.status, 0, read.output);
      assert.equal(publicKeyOf(read.output), publicKeyOf(keyPem));
    });

    test('holds the leaf as the key’s certificate and the intermediate and root as CA certificates', () => {
      const client = readBundle(file, password, ['-clcerts', '-nokeys']);
      assert.equal(client.status, 0, client.output);
      assert.deepEqual(fingerprints(client.output), [fingerprintOf(leaf.certFile)]);
      const cas = readBundle(file, password, ['-cacerts', '-nokeys']);
      assert.equal(cas.status, 0, cas.output);
      assert.deepEqual(fingerprints(cas.output), [fingerprintOf(issuing.certFile), fingerprintOf(root.certFile)]);
    });

    test('links key and leaf by one localKeyID and names both with the friendly name', () => {
      const all = readBundle(file, password, ['-nodes']).output;
      const ids = [...all.matchAll(/localKeyID: ([0-9A-F ]+)/g)].map((m) => m[1]?.trim());
      assert.equal(ids.length, 2, all);
      assert.equal(ids[0], ids[1]);
      assert.equal([...all.matchAll(new RegExp(`friendlyName: client ${keyType}\\n`, 'g'))].length, 2, all);
    });

    test('is refused by openssl under a wrong password', () => {
      const read = readBundle(file, 'wrong', ['-nodes']);
      assert.notEqual(read.status, 0);
      assert.doesNotMatch(read.output, /PRIVATE KEY/);
    });

    test('uses PBES2 with PBKDF2-HMAC-SHA256 and AES-256-CBC for key and certificates, and an HMAC-SHA256 MAC', () => {
      const info = readBundle(file, password, ['-info', '-noout']);
      assert.equal(info.status, 0, info.output);
      assert.match(info.output, /^MAC: sha256, Iteration 2048$/m);
      assert.match(info.output, /^PKCS7 Encrypted data: PBES2, PBKDF2, AES-256-CBC, Iteration 2048, PRF hmacWithSHA256$/m);
      assert.match(info.output, /^Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC, Iteration 2048, PRF hmacWithSHA256$/m);
      assert.doesNotMatch(info.output, /3DES|RC2|pbeWithSHA1/i);
    });

    test('is DER like OpenSSL\'s own bundles: definite lengths and each ciphertext in one OCTET STRING', () => {
      // the AuthenticatedSafe, then the plain SafeContents holding the key bag, each parsed out of its OCTET STRING
      const outer = asn1parse(file, []);
      const authSafe = asn1parse(file, [dataContent(outer)]);
      const keySafe = asn1parse(file, [dataContent(outer), dataContent(authSafe)]);
      assert.match(keySafe, /pkcs8ShroudedKeyBag/);
      for (const listing of [outer, authSafe, keySafe]) assert.ok(!/l=inf|cons: OCTET STRING/.test(listing), 'an indefinite length or a ciphertext cut into pieces');
      assert.match(authSafe, /prim: cont \[ 0 \]/, 'the certificates\' ciphertext is not one [0] IMPLICIT OCTET STRING');
    });
  });
}

describe('PKCS#12 inputs', () => {
  const leaf = pki.leaf('p12-inputs', issuing);
  const keyPem = readFileSync(leaf.keyFile, 'utf8');

  test('accepts a password with non-ASCII characters, encoded as openssl encodes it', async () => {
    const pass = 'pässwörd-ключ-✓';
    const file = join(pki.dir, 'unicode.p12');
    writeFileSync(file, await buildPkcs12({ keyPem, certPem: leaf.certPem, chainPems: [issuingPem], password: pass }));
    const read = readBundle(file, pass, ['-nocerts', '-nodes']);
    assert.equal(read.status, 0, read.output);
    // openssl retries a failed MAC with an old, wrong encoding of the password and warns when that one works
    assert.doesNotMatch(read.output, /broken algorithm/);
    assert.equal(publicKeyOf(read.output), publicKeyOf(keyPem));
  });

  test('refuses a key that does not belong to the certificate', async () => {
    const other = readFileSync(pki.key(join(pki.dir, 'other.key')), 'utf8');
    await assert.rejects(buildPkcs12({ keyPem: other, certPem: leaf.certPem, chainPems: [], password }), { name: 'TypeError', message: /does not belong to certificate CN=p12-inputs/ });
  });

  test('refuses a certPem holding the whole chain, pointing to chainPems', async () => {
    await assert.rejects(buildPkcs12({ keyPem, certPem: readFileSync(leaf.chainFile, 'utf8'), chainPems: [], password }), { name: 'TypeError', message: /expected one certificate, found 2; pass the CA certificates in chainPems/ });
  });
});
