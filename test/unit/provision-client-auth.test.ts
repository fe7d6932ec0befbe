import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { provisionClientAuth } from '../../src/config/provision-client-auth.js';
import { provisionContextIn, rawSite, type TestContext } from '../helpers/provision.js';
import { TestPki } from '../helpers/pki.js';

const pki = new TestPki();
after(() => pki.cleanup());
const root = pki.root('clients-root');
const intermediate = pki.intermediate('clients-intermediate', root);
const client = pki.leaf('a-client', intermediate, { eku: 'clientAuth' });
const otherRoot = pki.root('other-root');

const clientAuthOf = (fields: object) => rawSite({ clientAuth: { mode: 'require', ...fields } }).clientAuth!;

describe('provisionClientAuth', () => {
  test('reads the CA list, paths resolved against the config folder, with the defaults of the schema', (t) => {
    const ctx = provisionContextIn(t);
    copyFileSync(root.certFile, join(ctx.dir, 'root.pem'));
    const auth = provisionClientAuth(clientAuthOf({ ca: ['root.pem', intermediate.certFile] }), 'sites[0].clientAuth', ctx);
    assert.deepEqual(ctx.issues, []);
    assert.equal(auth.mode, 'require');
    assert.equal(auth.refuseAt, 'http');
    assert.equal(auth.verifyDepth, 4);
    assert.equal(auth.revocation, null);
    assert.deepEqual(auth.caFiles, [join(ctx.dir, 'root.pem'), intermediate.certFile]);
    assert.deepEqual(auth.caCerts.map((c) => c.subject), ['CN=clients-root\nO=Portcullis Tests', 'CN=clients-intermediate\nO=Portcullis Tests']);
    assert.deepEqual(auth.caPem, [readFileSync(root.certFile, 'utf8'), readFileSync(intermediate.certFile, 'utf8')]);
    assert.match(auth.key, /^[0-9a-f]{16}$/);
  });

  test('reads a bundle file of several CAs as one entry', (t) => {
    const ctx = provisionContextIn(t);
    writeFileSync(join(ctx.dir, 'bundle.pem'), readFileSync(intermediate.certFile, 'utf8') + readFileSync(root.certFile, 'utf8'));
    const auth = provisionClientAuth(clientAuthOf({ ca: ['bundle.pem'], mode: 'optional' }), 'sites[0].clientAuth', ctx);
    assert.deepEqual(ctx.issues, []);
    assert.equal(auth.mode, 'optional');
    assert.equal(auth.caCerts.length, 2);
  });

  test('names the policy by its settings: the same settings give the same key, another CA or mode another', (t) => {
    const ctx = provisionContextIn(t);
    const key = (fields: object) => provisionClientAuth(clientAuthOf({ ca: [root.certFile], ...fields }), 'sites[0].clientAuth', ctx).key;
    assert.equal(key({}), key({}));
    assert.notEqual(key({}), key({ mode: 'optional' }));
    assert.notEqual(key({}), key({ ca: [otherRoot.certFile] }));
    assert.notEqual(key({}), key({ ocsp: true }));
    assert.notEqual(key({}), key({ verifyDepth: 2 }));
    assert.deepEqual(ctx.issues, []);
  });

  const cases: { name: string; fields: (ctx: TestContext) => object; issues: (ctx: TestContext) => { path: string; message: string }[] }[] = [
    {
      name: 'a CA file that does not exist',
      fields: () => ({ ca: [root.certFile, 'missing.pem'] }),
      issues: (ctx) => [{ path: 'sites[1].clientAuth.ca[1]', message: `cannot read ${join(ctx.dir, 'missing.pem')} (ENOENT); give the CA certificate file that issues your client certificates` }],
    },
    {
      name: 'a CA file without a certificate',
      fields: (ctx) => ({ ca: [written(join(ctx.dir, 'empty.pem'), '')] }),
      issues: (ctx) => [{ path: 'sites[1].clientAuth.ca[0]', message: `${join(ctx.dir, 'empty.pem')} holds no PEM certificate; give the client CA certificate in PEM` }],
    },
    {
      name: 'a client certificate listed as a CA',
      fields: () => ({ ca: [root.certFile, client.certFile] }),
      issues: () => [{ path: 'sites[1].clientAuth.ca[1]', message: `${client.certFile} holds CN=a-client, which is not a CA certificate; list the CA that issued the client certificates, not a client certificate` }],
    },
    {
      name: 'an intermediate without its root',
      fields: () => ({ ca: [intermediate.certFile] }),
      issues: () => [
        {
          path: 'sites[1].clientAuth.ca',
          message: "CN=clients-intermediate, O=Portcullis Tests is issued by CN=clients-root, O=Portcullis Tests, which is not listed; list the root CA too (OpenSSL needs the whole path to a root). To admit only one intermediate's clients, add an allow-list to the routes",
        },
      ],
    },
    {
      // the list is partial: a missing root would be follow-on noise of the first problem
      name: 'only the unreadable entry of a list that also lacks a root',
      fields: () => ({ ca: [intermediate.certFile, 'missing.pem'] }),
      issues: (ctx) => [{ path: 'sites[1].clientAuth.ca[1]', message: `cannot read ${join(ctx.dir, 'missing.pem')} (ENOENT); give the CA certificate file that issues your client certificates` }],
    },
    {
      name: 'refuseAt: handshake with mode: optional',
      fields: () => ({ ca: [root.certFile], mode: 'optional', refuseAt: 'handshake' }),
      issues: () => [{ path: 'sites[1].clientAuth.refuseAt', message: 'refusing in the handshake needs mode: require (with optional, routes decide after the handshake); set mode: require, or remove refuseAt' }],
    },
  ];
  for (const c of cases) {
    test(`reports ${c.name}`, (t) => {
      const ctx = provisionContextIn(t);
      provisionClientAuth(clientAuthOf(c.fields(ctx)), 'sites[1].clientAuth', ctx);
      assert.deepEqual(ctx.issues, c.issues(ctx));
    });
  }
});

function written(file: string, text: string): string {
  writeFileSync(file, text);
  return file;
}
