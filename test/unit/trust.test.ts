import assert from 'node:assert/strict';
import { X509Certificate, webcrypto } from 'node:crypto';
import { after, describe, test } from 'node:test';
import { x509 } from '../../src/pki/index.js';
import { compileAllowList, identityHeaderValue, identityOf, normaliseFingerprint, parseSubjectAltName, parseSubjectPattern, quoteValue } from '../../src/trust/index.js';
import { TestPki } from '../helpers/pki.js';

const pki = new TestPki();
after(() => pki.cleanup());
const root = pki.root('trust-root');
const leaf = pki.leaf('trust-client', root, {
  eku: 'clientAuth',
  uris: ['spiffe://example.test/billing/api'],
  dns: ['svc.clients.example.test'],
  emails: ['ops@example.test'],
  subject: '/C=DE/O=Example, Inc./OU=Payments/CN=reporting',
});
const identity = identityOf(new X509Certificate(leaf.certPem));

describe('client identity', () => {
  test('extracts subject (RFC 4514 order), SANs, serial, fingerprint and SPKI pin from the leaf', () => {
    assert.equal(identity.subject, 'CN=reporting,OU=Payments,O=Example\\, Inc.,C=DE');
    assert.deepEqual(identity.subjectAttributes.get('O'), ['Example, Inc.']);
    assert.deepEqual(identity.uris, ['spiffe://example.test/billing/api']);
    assert.deepEqual(identity.dnsNames, ['svc.clients.example.test']);
    assert.deepEqual(identity.emails, ['ops@example.test']);
    assert.match(identity.serial, /^[0-9A-F]+$/);
    assert.match(identity.fingerprint, /^sha256:([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    assert.match(identity.spkiPin, /^[A-Za-z0-9+/]{43}=$/);
  });

  test('parses Node subjectAltName text, quoted values included', () => {
    assert.deepEqual(parseSubjectAltName('DNS:a.test, URI:"spiffe://x/a, b", email:o@x'), [
      { type: 'DNS', value: 'a.test' },
      { type: 'URI', value: 'spiffe://x/a, b' },
      { type: 'email', value: 'o@x' },
    ]);
  });
});

describe('allow-lists', () => {
  const cases: [string, Parameters<typeof compileAllowList>[0], boolean][] = [
    ['exact URI', { uri: ['spiffe://example.test/billing/api'] }, true],
    ['URI prefix', { uri: ['spiffe://example.test/billing/*'] }, true],
    ['other URI prefix', { uri: ['spiffe://example.test/orders/*'] }, false],
    ['exact DNS', { dns: ['svc.clients.example.test'] }, true],
    ['one-label DNS wildcard', { dns: ['*.clients.example.test'] }, true],
    ['DNS wildcard one label too high', { dns: ['*.example.test'] }, false],
    ['subject attributes in any order', { subject: ['O=Example\\, Inc.,CN=reporting'] }, true],
    ['subject with one attribute', { subject: ['OU=Payments'] }, true],
    ['subject with a wrong value', { subject: ['CN=reporting,O=Example'] }, false],
    ['fingerprint without colons, lower case', { fingerprints: [`sha256:${identity.fingerprint.slice(7).replace(/:/g, '').toLowerCase()}`] }, true],
    ['another fingerprint', { fingerprints: [`sha256:${'0'.repeat(64)}`] }, false],
  ];
  for (const [name, raw, expected] of cases) {
    test(`${expected ? 'matches' : 'does not match'} by ${name}`, () => assert.equal(compileAllowList(raw).matches(identity), expected));
  }

  const uriIdentity = (uri: string) => ({ ...identity, uris: [uri], dnsNames: [], subjectAttributes: new Map(), fingerprint: 'sha256:00' });
  const refusedUris = [
    'spiffe://example.test/billing/../admin',
    'spiffe://example.test/billing/%2e%2e/admin',
    'spiffe://example.test/billing/%2E%2E/admin',
    'spiffe://example.test/billing/.%2e/admin',
    'spiffe://example.test/billing/%2E./admin',
    'spiffe://example.test/billing/%2e',
    'spiffe://example.test/billing/a%2Fb',
    'spiffe://example.test/billing/a%5cb',
    'spiffe://example.test/billing/a\\b',
  ];
  for (const uri of refusedUris) {
    test(`never admits the URI SAN ${uri}, even by an exact pattern`, () => {
      assert.equal(compileAllowList({ uri: ['spiffe://example.test/billing/*', uri] }).matches(uriIdentity(uri)), false);
    });
  }

  test('reads RFC 4514 escapes in subject patterns as identities read certificates: hex escapes as UTF-8, an escaped trailing space kept', () => {
    assert.deepEqual(parseSubjectPattern('CN=a\\0Ab, O=\\C3\\A9t\\C3\\A9, OU=x\\ , L=\\2C'), [
      ['CN', 'a\nb'],
      ['O', 'été'],
      ['OU', 'x '],
      ['L', ','],
    ]);
  });

  test('reads subject patterns and fingerprints strictly', () => {
    assert.deepEqual(parseSubjectPattern('CN=a\\,b, O=X'), [
      ['CN', 'a,b'],
      ['O', 'X'],
    ]);
    assert.equal(parseSubjectPattern('no-equals'), null);
    assert.equal(parseSubjectPattern('CN=a,,O=b'), null);
    assert.equal(normaliseFingerprint('sha256:ab'), null);
    assert.equal(normaliseFingerprint(`SHA256:${'Ab'.repeat(32)}`), `sha256:${Array(32).fill('AB').join(':')}`);
  });
});

describe('the identity header', () => {
  test('carries hash, subject, issuer and every SAN', () => {
    assert.equal(
      identityHeaderValue(identity),
      `Hash=${identity.fingerprint.slice(7).replace(/:/g, '').toLowerCase()};Subject="CN=reporting,OU=Payments,O=Example\\\\, Inc.,C=DE";Issuer="O=Portcullis Tests,CN=trust-root";URI="spiffe://example.test/billing/api";DNS="svc.clients.example.test";Email="ops@example.test"`,
    );
  });

  test('carries a subject with a control character as Node prints it (an RFC 4514 hex escape), which reads back as the value and matches an allow-list entry', async () => {
    const keys = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: '01',
      name: new x509.Name([{ CN: [{ utf8String: 'a\nb é' }] }]),
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 86_400_000),
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      keys,
    });
    const id = identityOf(new X509Certificate(Buffer.from(cert.rawData)));
    assert.deepEqual(id.subjectAttributes.get('CN'), ['a\nb é']);
    assert.equal(id.subject, 'CN=a\\0Ab é');
    assert.match(identityHeaderValue(id), /;Subject="CN=a\\\\0Ab %C3%A9";/);
    assert.ok(compileAllowList({ subject: ['CN=a\\0Ab é'] }).matches(id));
    assert.ok(compileAllowList({ subject: ['CN=a\\0Ab \\C3\\A9'] }).matches(id));
    assert.ok(!compileAllowList({ subject: ['CN=a0Ab é'] }).matches(id));
  });

  test('quotes values so that nothing breaks out of them or out of the header', () => {
    assert.equal(quoteValue('a"b\\c'), '"a\\"b\\\\c"');
    assert.equal(quoteValue('x;URI=evil'), '"x;URI=evil"');
    assert.equal(quoteValue('line\r\nInjected: 1'), '"line%0D%0AInjected: 1"');
    assert.equal(quoteValue('Müller 100%'), '"M%C3%BCller 100%25"');
  });
});
