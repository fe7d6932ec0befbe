import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { provisionClientAuth } from '../../src/config/provision-client-auth.js';
import { provisionRevocation } from '../../src/config/provision-revocation.js';
import { provisionContextIn, rawSite, type TestContext } from '../helpers/provision.js';
import { TestPki } from '../helpers/pki.js';

const pki = new TestPki();
after(() => pki.cleanup());
const root = pki.root('revocation-root');
const foreign = pki.root('revocation-foreign');
const crlPem = pki.crl(root, join(pki.dir, 'root.crl'));
const crlDer = pki.crl(root, join(pki.dir, 'root.der.crl'), { der: true });
const foreignCrl = pki.crl(foreign, join(pki.dir, 'foreign.crl'));
const caCerts = [new X509Certificate(readFileSync(root.certFile))];

const clientAuthOf = (fields: object) => rawSite({ clientAuth: { mode: 'require', ca: [root.certFile], ...fields } }).clientAuth!;

describe('provisionRevocation', () => {
  test('is null when neither CRLs nor OCSP are configured', (t) => {
    const ctx = provisionContextIn(t);
    assert.equal(provisionRevocation(clientAuthOf({}), 'sites[0].clientAuth', ctx, caCerts), null);
    assert.deepEqual(ctx.issues, []);
  });

  test('reads CRL files of a listed CA, PEM or DER, resolved against the config folder, and keeps URLs normalised', (t) => {
    const ctx = provisionContextIn(t);
    copyFileSync(crlPem, join(ctx.dir, 'ca.crl'));
    const policy = provisionRevocation(clientAuthOf({ crl: ['ca.crl', crlDer, 'HTTP://CRL.example.test/ca.crl'] }), 'sites[0].clientAuth', ctx, caCerts);
    assert.deepEqual(ctx.issues, []);
    assert.deepEqual(policy, {
      crls: [
        { kind: 'file', location: join(ctx.dir, 'ca.crl') },
        { kind: 'file', location: crlDer },
        { kind: 'url', location: 'http://crl.example.test/ca.crl' },
      ],
      distributionPoints: true,
      ocsp: false,
      ocspResponder: null,
      onUnavailable: 'reject',
    });
  });

  test('with an empty crl list checks only the distribution points named in client certificates', (t) => {
    const ctx = provisionContextIn(t);
    const policy = provisionRevocation(clientAuthOf({ crl: [] }), 'sites[0].clientAuth', ctx, caCerts);
    assert.deepEqual(policy?.crls, []);
    assert.equal(policy?.distributionPoints, true);
  });

  test('with OCSP alone keeps the responder and the policy when revocation is unavailable', (t) => {
    const ctx = provisionContextIn(t);
    const policy = provisionRevocation(clientAuthOf({ ocsp: true, ocspResponder: 'http://ocsp.example.test', onRevocationUnavailable: 'allow' }), 'sites[0].clientAuth', ctx, caCerts);
    assert.deepEqual(ctx.issues, []);
    assert.deepEqual(policy, { crls: [], distributionPoints: false, ocsp: true, ocspResponder: 'http://ocsp.example.test', onUnavailable: 'allow' });
  });

  test('does not judge a CRL issuer against a CA list that has a problem of its own', (t) => {
    const ctx = provisionContextIn(t);
    const policy = provisionRevocation(clientAuthOf({ crl: [foreignCrl] }), 'sites[0].clientAuth', ctx, null);
    assert.deepEqual(ctx.issues, []);
    assert.deepEqual(policy?.crls, [{ kind: 'file', location: foreignCrl }]);
  });

  test('reports only the CA entry, not the CRL, when clientAuth.ca is unreadable', (t) => {
    const ctx = provisionContextIn(t);
    provisionClientAuth(clientAuthOf({ ca: ['missing.pem'], crl: [foreignCrl] }), 'sites[0].clientAuth', ctx);
    assert.deepEqual(ctx.issues.map((i) => i.path), ['sites[0].clientAuth.ca[0]']);
  });

  const ocspOnly = 'ocspResponder is used only with ocsp: true; add ocsp: true or remove it';
  const cases: { name: string; fields: object; path: string; message: (ctx: TestContext) => string | RegExp; crls?: number }[] = [
    { name: 'a CRL URL of another scheme', fields: { crl: ['ldap://ldap.example.test/cn=crl'] }, path: 'sites[2].clientAuth.crl[0]', message: () => 'ldap://ldap.example.test/cn=crl is not an http(s) URL; CRLs are fetched over http or https only (or give a file path)' },
    { name: 'a CRL URL that does not parse', fields: { crl: ['http://[::1/ca.crl'] }, path: 'sites[2].clientAuth.crl[0]', message: () => 'http://[::1/ca.crl is not a valid URL' },
    { name: 'a CRL file that does not exist', fields: { crl: ['missing.crl'] }, path: 'sites[2].clientAuth.crl[0]', message: (ctx) => `cannot read ${join(ctx.dir, 'missing.crl')} (ENOENT); give the CRL file (PEM or DER) of your client CA` },
    { name: 'a CRL file that holds a certificate', fields: { crl: [root.certFile] }, path: 'sites[2].clientAuth.crl[0]', message: () => `${root.certFile} is PEM but holds no "BEGIN X509 CRL" block; give the CRL in PEM or DER` },
    {
      name: 'a CRL of a CA not in clientAuth.ca',
      fields: { crl: [crlPem, foreignCrl] },
      path: 'sites[2].clientAuth.crl[1]',
      message: () => new RegExp(`^${foreignCrl} is issued by .*CN=revocation-foreign.*, which is not in clientAuth\\.ca; list the CA that signs it in clientAuth\\.ca, or remove the CRL$`),
      crls: 2,
    },
    { name: 'an OCSP responder without ocsp', fields: { ocspResponder: 'http://ocsp.example.test' }, path: 'sites[2].clientAuth.ocspResponder', message: () => ocspOnly },
    { name: 'an OCSP responder without ocsp beside CRLs', fields: { crl: [], ocspResponder: 'http://ocsp.example.test' }, path: 'sites[2].clientAuth.ocspResponder', message: () => ocspOnly },
  ];
  for (const c of cases) {
    test(`reports ${c.name}`, (t) => {
      const ctx = provisionContextIn(t);
      const policy = provisionRevocation(clientAuthOf(c.fields), 'sites[2].clientAuth', ctx, caCerts);
      assert.equal(ctx.issues.length, 1, JSON.stringify(ctx.issues));
      assert.equal(ctx.issues[0]!.path, c.path);
      const expected = c.message(ctx);
      if (typeof expected === 'string') assert.equal(ctx.issues[0]!.message, expected);
      else assert.match(ctx.issues[0]!.message, expected);
      // an entry with an issue is left out, but for a CRL of a CA not listed (its issue fails the config anyway)
      assert.equal(policy?.crls.length ?? 0, c.crls ?? 0);
    });
  }
});
