import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { rootCertificates } from 'node:tls';
import { after, describe, test } from 'node:test';
import { provisionUpstreamTls } from '../../src/config/provision-upstream-tls.js';
import { provisionContextIn, rawRoute, type TestContext } from '../helpers/provision.js';
import { TestPki } from '../helpers/pki.js';

const pki = new TestPki();
after(() => pki.cleanup());
const root = pki.root('upstream-root');
const intermediate = pki.intermediate('upstream-intermediate', root);
const client = pki.leaf('upstream-client', intermediate, { eku: 'clientAuth' });
const serverOnly = pki.leaf('upstream-server-only', intermediate, { dns: ['a.test'] });
const rootPem = readFileSync(root.certFile, 'utf8');
const intermediatePem = readFileSync(intermediate.certFile, 'utf8');

const upstreamTlsOf = (fields: object) => rawRoute({ upstream: 'https://a.test', upstreamTls: fields }).upstreamTls!;

describe('provisionUpstreamTls', () => {
  test('trusts the public roots only, with nothing given', (t) => {
    const ctx = provisionContextIn(t);
    assert.deepEqual(provisionUpstreamTls({}, 'sites[0].routes[0].upstreamTls', ctx), { ca: [...rootCertificates], serverName: undefined, clientCertificate: undefined });
    assert.deepEqual(ctx.issues, []);
  });

  test('adds every certificate of upstreamTls.ca to the public roots, the path resolved against the config folder', (t) => {
    const ctx = provisionContextIn(t);
    writeFileSync(join(ctx.dir, 'upstream-ca.pem'), intermediatePem + rootPem);
    const tls = provisionUpstreamTls(upstreamTlsOf({ ca: 'upstream-ca.pem' }), 'sites[0].routes[0].upstreamTls', ctx);
    assert.deepEqual(ctx.issues, []);
    assert.deepEqual(tls.ca, [...rootCertificates, intermediatePem, rootPem]);
  });

  test('presents a client certificate, checked for the clientAuth usage', (t) => {
    const ctx = provisionContextIn(t);
    copyFileSync(client.chainFile, join(ctx.dir, 'client.pem'));
    const tls = provisionUpstreamTls(upstreamTlsOf({ cert: 'client.pem', key: client.keyFile, serverName: 'Upstream.Test' }), 'sites[0].routes[0].upstreamTls', ctx);
    assert.deepEqual(ctx.issues, []);
    assert.equal(tls.clientCertificate?.certFile, join(ctx.dir, 'client.pem'));
    assert.equal(tls.clientCertificate?.keyDescription, 'ECDSA P-256');
    assert.equal(tls.serverName, 'upstream.test');
  });

  const at = 'sites[1].routes[2].upstreamTls';
  const cases: { name: string; fields: (ctx: TestContext) => object; path: string; message: (ctx: TestContext) => string }[] = [
    { name: 'a CA file that does not exist', fields: () => ({ ca: 'missing.pem' }), path: `${at}.ca`, message: (ctx) => `cannot read ${join(ctx.dir, 'missing.pem')} (ENOENT); give the PEM CA certificate file of the upstream's TLS` },
    {
      name: 'a CA file without a certificate',
      fields: (ctx) => {
        writeFileSync(join(ctx.dir, 'key-only.pem'), readFileSync(root.keyFile));
        return { ca: 'key-only.pem' };
      },
      path: `${at}.ca`,
      message: (ctx) => `${join(ctx.dir, 'key-only.pem')} holds no PEM certificate; give the upstream's CA certificate in PEM`,
    },
    { name: 'a client certificate without its key', fields: () => ({ cert: client.chainFile }), path: at, message: () => 'give both cert: and key: for the client certificate presented to the upstream; key is missing' },
    { name: 'a client key without its certificate', fields: () => ({ key: client.keyFile }), path: at, message: () => 'give both cert: and key: for the client certificate presented to the upstream; cert is missing' },
    {
      name: 'a server-only certificate presented as a client',
      fields: () => ({ cert: serverOnly.chainFile, key: serverOnly.keyFile }),
      path: `${at}.cert`,
      message: () => `certificate ${serverOnly.chainFile} lacks the clientAuth extended key usage (it has 1.3.6.1.5.5.7.3.1); reissue it for TLS clients`,
    },
    {
      name: 'a client key file that does not exist',
      fields: () => ({ cert: client.chainFile, key: 'missing.key' }),
      path: `${at}.key`,
      message: (ctx) => `file ${join(ctx.dir, 'missing.key')} does not exist; check the path (relative paths start at the config file's folder)`,
    },
  ];
  for (const c of cases) {
    test(`reports ${c.name}`, (t) => {
      const ctx = provisionContextIn(t);
      const tls = provisionUpstreamTls(upstreamTlsOf(c.fields(ctx)), at, ctx);
      assert.deepEqual(ctx.issues, [{ path: c.path, message: c.message(ctx) }]);
      assert.equal(tls.clientCertificate, undefined);
      assert.deepEqual(tls.ca, [...rootCertificates]);
    });
  }
});
