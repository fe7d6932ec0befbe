import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { after, describe, test } from 'node:test';
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

  test('quotes values so that nothing breaks out of them or out of the header', () => {
    assert.equal(quoteValue('a"b\\c'), '"a\\"b\\\\c"');
    assert.equal(quoteValue('x;URI=evil'), '"x;URI=evil"');
    assert.equal(quoteValue('line\r\nInjected: 1'), '"line%0D%0AInjected: 1"');
    assert.equal(quoteValue('Müller 100%'), '"M%C3%BCller 100%25"');
  });
});
