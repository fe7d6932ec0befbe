import assert from 'node:assert/strict';
import { rootCertificates } from 'node:tls';
import { describe, test } from 'node:test';
import { provisionRoutes } from '../../src/config/provision-routes.js';
import { provisionContextIn, rawSite } from '../helpers/provision.js';

const route = (path: string, fields: object = {}) => ({ path, upstream: 'http://127.0.0.1:9000', ...fields });
const clientAuth = (mode: 'require' | 'optional') => ({ mode, ca: ['ca.pem'] });

describe('provisionRoutes', () => {
  test('orders routes longest path first, keeping their index and how each path matches', (t) => {
    const ctx = provisionContextIn(t);
    const routes = provisionRoutes(rawSite({ routes: [route('/'), route('/payments/'), route('/api')] }), 'sites[0]', ctx);
    assert.deepEqual(ctx.issues, []);
    assert.deepEqual(routes.map((r) => [r.path, r.index, r.segmentBoundary]), [['/payments/', 1, false], ['/api', 2, true], ['/', 0, false]]);
    assert.deepEqual(routes.map((r) => [r.apiKeys, r.allow, r.rateLimit]), [['off', null, null], ['off', null, null], ['off', null, null]]);
  });

  const clientCerts: { site: 'require' | 'optional' | null; route?: 'required' | 'optional'; expected: 'required' | 'optional' | null }[] = [
    { site: null, expected: null },
    { site: 'require', expected: 'required' },
    { site: 'require', route: 'optional', expected: 'required' },
    { site: 'optional', expected: 'required' },
    { site: 'optional', route: 'optional', expected: 'optional' },
    { site: 'optional', route: 'required', expected: 'required' },
  ];
  for (const c of clientCerts) {
    test(`needs a client certificate "${c.expected}" on a site with clientAuth ${c.site ?? 'none'} and a route with clientCert ${c.route ?? 'unset'}`, (t) => {
      const ctx = provisionContextIn(t);
      const site = rawSite({ routes: [route('/', c.route ? { clientCert: c.route } : {})], ...(c.site ? { clientAuth: clientAuth(c.site) } : {}) });
      assert.equal(provisionRoutes(site, 'sites[0]', ctx)[0]!.clientCert, c.expected);
      assert.deepEqual(ctx.issues, []);
    });
  }

  test('limits a route by its own rate, else by its site\'s, with a burst of one second\'s worth by default', (t) => {
    const ctx = provisionContextIn(t);
    const routes = provisionRoutes(rawSite({ rateLimit: { rps: 0.5 }, routes: [route('/own/', { rateLimit: { rps: 20 } }), route('/burst/', { rateLimit: { rps: 5, burst: 50 } }), route('/')] }), 'sites[0]', ctx);
    assert.deepEqual(ctx.issues, []);
    assert.deepEqual(routes.map((r) => [r.path, r.rateLimit]), [['/burst/', { rps: 5, burst: 50 }], ['/own/', { rps: 20, burst: 20 }], ['/', { rps: 0.5, burst: 1 }]]);
  });

  test('compiles an allow-list and keeps the API key mode', (t) => {
    const ctx = provisionContextIn(t);
    const [r] = provisionRoutes(rawSite({ clientAuth: clientAuth('require'), routes: [route('/', { allow: { dns: ['*.clients.test'] }, apiKeys: 'required' })] }), 'sites[0]', ctx);
    assert.deepEqual(ctx.issues, []);
    assert.notEqual(r!.allow, null);
    assert.equal(r!.apiKeys, 'required');
  });

  test('makes upstream targets: host without brackets, the DNS name verified for https, none for an IP, the shared TLS settings', (t) => {
    const ctx = provisionContextIn(t);
    const upstreams = ['http://10.0.0.1:9000', 'https://API.internal.test:9001', 'https://[::1]:9002', 'https://10.0.0.2'];
    const [r] = provisionRoutes(rawSite({ routes: [route('/', { upstream: upstreams })] }), 'sites[0]', ctx);
    assert.deepEqual(ctx.issues, []);
    const targets = r!.upstreams.map((u) => (u.kind === 'http' ? [u.origin, u.host, u.serverName, u.tls === null] : [u.origin]));
    assert.deepEqual(targets, [
      ['http://10.0.0.1:9000', '10.0.0.1', undefined, true],
      ['https://api.internal.test:9001', 'api.internal.test', 'api.internal.test', false],
      ['https://[::1]:9002', '::1', undefined, false],
      ['https://10.0.0.2', '10.0.0.2', undefined, false],
    ]);
    const tls = r!.upstreams.flatMap((u) => (u.kind === 'http' && u.tls ? [u.tls] : []));
    assert.equal(new Set(tls).size, 1, 'one TLS setting shared by every https upstream of the route');
    assert.deepEqual(tls[0]!.ca, [...rootCertificates]);
  });

  test('verifies every https upstream against upstreamTls.serverName when given, in lower case', (t) => {
    const ctx = provisionContextIn(t);
    const [r] = provisionRoutes(rawSite({ routes: [route('/', { upstream: ['https://10.0.0.1', 'https://b.test'], upstreamTls: { serverName: 'Svc.Internal.Test' } })] }), 'sites[0]', ctx);
    assert.deepEqual(ctx.issues, []);
    assert.deepEqual(r!.upstreams.map((u) => (u.kind === 'http' ? u.serverName : null)), ['svc.internal.test', 'svc.internal.test']);
  });

  test('serves the built-in upstream', (t) => {
    const ctx = provisionContextIn(t);
    const [r] = provisionRoutes(rawSite({ routes: [route('/', { upstream: 'builtin:whoami' })] }), 'sites[0]', ctx);
    assert.deepEqual(ctx.issues, []);
    assert.deepEqual(r!.upstreams, [{ kind: 'builtin', name: 'whoami', origin: 'builtin:whoami' }]);
  });

  const cases: { name: string; site: object; path: string; message: string }[] = [
    { name: 'two routes with one path', site: { routes: [route('/a/'), route('/a/', { upstream: 'http://127.0.0.1:9001' })] }, path: 'sites[4].routes[1].path', message: '"/a/" is already used by another route of this site; merge them' },
    { name: 'the built-in upstream among others', site: { routes: [route('/', { upstream: ['builtin:whoami', 'http://127.0.0.1:9000'] })] }, path: 'sites[4].routes[0].upstream', message: 'builtin:whoami cannot be mixed with other upstreams; give it a route of its own' },
    { name: 'an upstream listed twice', site: { routes: [route('/', { upstream: ['http://127.0.0.1:9000', 'http://127.0.0.1:9000'] })] }, path: 'sites[4].routes[0].upstream[1]', message: 'http://127.0.0.1:9000 is listed twice; remove the duplicate' },
    { name: 'upstreamTls without an https upstream', site: { routes: [route('/', { upstreamTls: { serverName: 'a.test' } })] }, path: 'sites[4].routes[0].upstreamTls', message: 'upstreamTls applies to https:// upstreams only; use https:// URLs or remove upstreamTls' },
    { name: 'clientCert on a site without clientAuth', site: { routes: [route('/', { clientCert: 'required', allow: { dns: ['a.test'] } })] }, path: 'sites[4].routes[0].clientCert', message: 'client certificates need clientAuth on the site; add clientAuth: {mode: optional, ca: [your-client-ca.pem]}' },
    { name: 'an allow-list on a site without clientAuth', site: { routes: [route('/', { allow: { dns: ['a.test'] } })] }, path: 'sites[4].routes[0].allow', message: 'client certificates need clientAuth on the site; add clientAuth: {mode: optional, ca: [your-client-ca.pem]}' },
    { name: 'an allow-list on a route where the certificate is optional', site: { clientAuth: clientAuth('optional'), routes: [route('/', { clientCert: 'optional', allow: { dns: ['a.test'] } })] }, path: 'sites[4].routes[0].allow', message: 'an allow-list admits only certain certificates, so it needs clientCert: required (anonymous clients could never match it)' },
  ];
  for (const c of cases) {
    test(`reports ${c.name}`, (t) => {
      const ctx = provisionContextIn(t);
      provisionRoutes(rawSite(c.site), 'sites[4]', ctx);
      assert.deepEqual(ctx.issues, [{ path: c.path, message: c.message }]);
    });
  }
});
