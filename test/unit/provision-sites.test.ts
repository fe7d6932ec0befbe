import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { provisionSite, provisionSites } from '../../src/config/provision-sites.js';
import { provisionContextIn, rawSite } from '../helpers/provision.js';
import { TestPki } from '../helpers/pki.js';

const pki = new TestPki();
after(() => pki.cleanup());
const root = pki.root('sites-root');
const apiLeaf = pki.leaf('sites-api', root, { dns: ['api.test', '*.api.test'] });
const wwwLeaf = pki.leaf('sites-www', root, { dns: ['www.test'] });
const bothLeaf = pki.leaf('sites-both', root, { dns: ['www.test', 'api.test'] });
const api = { cert: apiLeaf.chainFile, key: apiLeaf.keyFile };
const www = { cert: wwwLeaf.chainFile, key: wwwLeaf.keyFile };

describe('provisionSite', () => {
  test('normalises its hosts and names the site by the first; identity header, HSTS and sections as given', (t) => {
    const ctx = provisionContextIn(t);
    const site = provisionSite(rawSite({ hosts: ['API.Test', '*.api.test'], certificates: [api], clientAuth: { mode: 'optional', ca: [root.certFile], forwardHeader: 'X-Partner' }, default: true, ipAccess: { deny: ['10.0.0.0/8'] } }), 2, ctx);
    assert.deepEqual(ctx.issues, []);
    assert.equal(site.id, 'api.test');
    assert.equal(site.index, 2);
    assert.deepEqual(site.hosts, ['api.test', '*.api.test']);
    assert.equal(site.isDefault, true);
    assert.equal(site.identityHeader, 'x-partner');
    assert.equal(site.hsts, 'max-age=31536000; includeSubDomains');
    assert.equal(site.certificates[0]!.certFile, apiLeaf.chainFile);
    assert.equal(site.acme, null);
    assert.equal(site.clientAuth?.mode, 'optional');
    assert.equal(site.routes.length, 1);
    assert.equal(site.ipAccess.allow, null);
    assert.equal(site.ipAccess.deny?.check('10.1.2.3'), true);
  });

  test('without clientAuth still names the identity header it strips, x-client-cert', (t) => {
    const ctx = provisionContextIn(t);
    const site = provisionSite(rawSite({ certificates: [api] }), 0, ctx);
    assert.equal(site.clientAuth, null);
    assert.equal(site.identityHeader, 'x-client-cert');
    assert.deepEqual(site.ipAccess, { allow: null, deny: null });
  });

  const hsts: { given: object; expected: string }[] = [
    { given: { maxAge: 300, includeSubDomains: false }, expected: 'max-age=300' },
    { given: { maxAge: 63_072_000, preload: true }, expected: 'max-age=63072000; includeSubDomains; preload' },
  ];
  for (const c of hsts) {
    test(`sends Strict-Transport-Security: ${c.expected}`, (t) => {
      const ctx = provisionContextIn(t);
      assert.equal(provisionSite(rawSite({ certificates: [api], hsts: c.given }), 0, ctx).hsts, c.expected);
      assert.deepEqual(ctx.issues, []);
    });
  }

  const cases: { name: string; site: object; path: string; message: string }[] = [
    { name: 'a host listed twice, once in capitals', site: { hosts: ['api.test', 'API.test'], certificates: [api] }, path: 'sites[5].hosts[1]', message: '"api.test" is listed twice; remove the duplicate' },
    { name: 'HSTS preload with a short maxAge', site: { certificates: [api], hsts: { maxAge: 300, preload: true } }, path: 'sites[5].hsts.preload', message: 'preload lists require maxAge of at least 31536000 and includeSubDomains: true; raise them or drop preload' },
    { name: 'HSTS preload without subdomains', site: { certificates: [api], hsts: { includeSubDomains: false, preload: true } }, path: 'sites[5].hsts.preload', message: 'preload lists require maxAge of at least 31536000 and includeSubDomains: true; raise them or drop preload' },
  ];
  for (const c of cases) {
    test(`reports ${c.name}`, (t) => {
      const ctx = provisionContextIn(t);
      provisionSite(rawSite(c.site), 5, ctx);
      assert.deepEqual(ctx.issues, [{ path: c.path, message: c.message }]);
    });
  }

  test('reports the issues of its sections at their paths under the site', (t) => {
    const ctx = provisionContextIn(t);
    provisionSite(rawSite({ certificates: [{ cert: 'missing.pem', key: apiLeaf.keyFile }], clientAuth: { mode: 'require', ca: ['missing-ca.pem'] }, routes: [{ path: '/', upstream: 'http://a.test', upstreamTls: {} }] }), 1, ctx);
    assert.deepEqual(ctx.issues.map((i) => i.path), ['sites[1].certificates[0].cert', 'sites[1].clientAuth.ca[0]', 'sites[1].routes[0].upstreamTls']);
  });
});

describe('provisionSites', () => {
  test('maps every host to its site, and finds the default', (t) => {
    const ctx = provisionContextIn(t);
    const { sites, hosts, defaultSite } = provisionSites([rawSite({ hosts: ['api.test', '*.api.test'], certificates: [api] }), rawSite({ hosts: ['www.test'], certificates: [www], default: true })], ctx);
    assert.deepEqual(ctx.issues, []);
    assert.deepEqual(sites.map((s) => [s.index, s.id]), [[0, 'api.test'], [1, 'www.test']]);
    assert.equal(hosts.lookup('x.api.test'), sites[0]);
    assert.equal(hosts.lookup('www.test'), sites[1]);
    assert.equal(defaultSite, sites[1]);
  });

  test('has no default site unless one is marked', (t) => {
    const ctx = provisionContextIn(t);
    assert.equal(provisionSites([rawSite({ certificates: [api] })], ctx).defaultSite, null);
  });

  test('reports a host served by two sites, and keeps it with the first', (t) => {
    const ctx = provisionContextIn(t);
    const { sites, hosts } = provisionSites([rawSite({ certificates: [api] }), rawSite({ hosts: ['www.test', 'API.test'], certificates: [{ cert: bothLeaf.chainFile, key: bothLeaf.keyFile }] })], ctx);
    assert.deepEqual(ctx.issues, [{ path: 'sites[1].hosts[1]', message: '"api.test" is already served by sites[0]; each host belongs to exactly one site' }]);
    assert.equal(hosts.lookup('api.test'), sites[0]);
  });

  test('reports a second default site, and keeps the first', (t) => {
    const ctx = provisionContextIn(t);
    const { sites, defaultSite } = provisionSites([rawSite({ certificates: [api], default: true }), rawSite({ hosts: ['www.test'], certificates: [www], default: true })], ctx);
    assert.deepEqual(ctx.issues, [{ path: 'sites[1].default', message: 'sites[0] (api.test) is already the default site; mark only one site default: true' }]);
    assert.equal(defaultSite, sites[0]);
  });
});
