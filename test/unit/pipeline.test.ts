import assert from 'node:assert/strict';
import { IncomingMessage, ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import { describe, test } from 'node:test';
import { newApiKey, type ApiKeyRecord } from '../../src/access/index.js';
import type { Reason } from '../../src/errors.js';
import { decide } from '../../src/proxy/pipeline.js';
import { RequestContext, type ProxyState } from '../../src/proxy/request-context.js';
import type { ConnectionInfo } from '../../src/tls/index.js';
import { config, connection, expired, forwardingFields, noCertificate, partnerA, partnerB, refused, reloaded, stateOf, valid } from '../helpers/pipeline-harness.js';

/**
 * The request pipeline's phases over injected requests, as fastify's
 * inject() does it: a request Node's HTTP/1.1 parser could have produced,
 * on a connection the TLS layer could have described, run through `decide`
 * (every phase, in order, up to the first reason) with no socket and no
 * upstream. The config, certificates, state and connections come from the
 * shared harness (test/helpers/pipeline-harness.ts); what differs for HTTP/2
 * requests is tested in pipeline-http2.test.ts.
 */

interface Injected {
  readonly method?: string;
  readonly url?: string;
  /** Header fields as sent, in order, names in the client's spelling. */
  readonly headers?: readonly (readonly [string, string])[];
}

/** A request context for an HTTP/1.1 request on `conn`, without a socket. */
function inject(state: ProxyState, conn: ConnectionInfo, { method = 'GET', url = '/', headers = [] }: Injected): RequestContext {
  const req = new IncomingMessage(new Socket());
  req.method = method;
  req.url = url;
  req.httpVersionMajor = 1;
  req.httpVersionMinor = 1;
  req.httpVersion = '1.1';
  const raw = headers.flat();
  // how Node's HTTP parser hands a request its header lines: req.headers then joins repeated fields by Node's own rules
  (req as unknown as { _addHeaderLines(lines: string[], n: number): void })._addHeaderLines(raw, raw.length);
  return new RequestContext(req, new ServerResponse(req), conn, state, null);
}

/** Injects the request and runs the phases: the reason, and the context they filled in. */
function run(state: ProxyState, conn: ConnectionInfo, request: Injected): { reason: Reason | null; ctx: RequestContext } {
  const ctx = inject(state, conn, request);
  return { reason: decide(ctx), ctx };
}

const host = (name: string): [string, string] => ['Host', name];

/** An API key record as the key store holds it. */
function keyRecord(key: ReturnType<typeof newApiKey>, fields: Partial<ApiKeyRecord> = {}): ApiKeyRecord {
  return { id: key.id, name: 'pipeline', hash: key.hash, routes: null, createdAt: new Date().toISOString(), expiresAt: null, revokedAt: null, bindCert: null, bindUri: null, rotatedTo: null, ...fields };
}

const bearer = (key: string): [string, string] => ['Authorization', `Bearer ${key}`];

describe('limitHeaders', () => {
  // GET / with Host: api.test counts 7 + 5 + 64 (the request line as :method and :path) + 3 + 1, and 4 + 8 + 32 for Host: 124 bytes
  const padTo = (bytes: number): [string, string] => ['X-Pad', 'p'.repeat(bytes - 124 - 'X-Pad'.length - 32)];

  test('admits a header list of exactly limits.maxHeaderBytes, counted as RFC 9113 does, and answers one byte more headers_too_large with the size in detail', (t) => {
    const { state } = stateOf(t);
    const conn = connection('api.test', null);
    assert.equal(run(state, conn, { headers: [host('api.test'), padTo(1024)] }).reason, null);
    const over = run(state, conn, { headers: [host('api.test'), padTo(1025)] });
    assert.equal(over.reason, 'headers_too_large');
    assert.equal(over.ctx.detail, '1025 bytes; limits.maxHeaderBytes is 1024');
  });

  test('admits limits.maxHeaderFields fields, refuses one more, and counts all cookie fields as one', (t) => {
    const { state } = stateOf(t);
    const conn = connection('api.test', null);
    const fields = (n: number) => [host('api.test'), ...Array.from({ length: n - 1 }, (_, i): [string, string] => [`X-F${i}`, 'v'])];
    assert.equal(run(state, conn, { headers: fields(16) }).reason, null);
    const over = run(state, conn, { headers: fields(17) });
    assert.equal(over.reason, 'headers_too_large');
    assert.equal(over.ctx.detail, '17 fields; limits.maxHeaderFields is 16');
    const cookies = Array.from({ length: 5 }, (_, i): [string, string] => ['Cookie', `c${i}=1`]);
    assert.equal(run(state, conn, { headers: [...fields(15), ...cookies] }).reason, null, '15 fields and 5 cookie fields are 16');
  });

  test('comes first: an oversized request for an unknown host is answered headers_too_large', (t) => {
    const { state } = stateOf(t);
    assert.equal(run(state, connection('api.test', null), { headers: [host('elsewhere.test'), padTo(2000)] }).reason, 'headers_too_large');
  });
});

describe('resolveSite', () => {
  test('binds the request to the site the handshake chose: its hosts, wildcard included, in any case and with a port', (t) => {
    const { state } = stateOf(t);
    const conn = connection('api.test', null);
    const { reason, ctx } = run(state, conn, { headers: [host('API.Test:8443')] });
    assert.equal(reason, null);
    assert.equal(ctx.site?.id, 'api.test');
    assert.equal(ctx.host, 'api.test');
    assert.equal(ctx.authority, 'API.Test:8443', 'forwarded as sent');
    assert.equal(run(state, conn, { headers: [host('eu.api.test')] }).ctx.site?.id, 'api.test');
  });

  test('refuses a Host of another site with sni_host_mismatch, also when it comes as an absolute-form target', (t) => {
    const { state } = stateOf(t);
    const conn = connection('api.test', null);
    assert.equal(run(state, conn, { headers: [host('partners.test')] }).reason, 'sni_host_mismatch');
    assert.equal(run(state, conn, { url: 'https://partners.test/public/x', headers: [host('api.test')] }).reason, 'sni_host_mismatch', "the target's authority replaces Host");
  });

  test('refuses a host no site claims with unknown_host, except on the default site, which serves it but never a host of another site', (t) => {
    const { state } = stateOf(t);
    assert.equal(run(state, connection('api.test', null), { headers: [host('nobody.test')] }).reason, 'unknown_host');
    const fallback = connection('fallback.test', null);
    const served = run(state, fallback, { headers: [host('nobody.test')] });
    assert.equal(served.reason, null);
    assert.equal(served.ctx.site?.id, 'fallback.test');
    assert.equal(run(state, fallback, { headers: [host('api.test')] }).reason, 'sni_host_mismatch');
  });

  test('refuses a missing, repeated or malformed Host with bad_request_target, and CONNECT and TRACE with method_not_allowed', (t) => {
    const { state } = stateOf(t);
    const conn = connection('api.test', null);
    assert.equal(run(state, conn, {}).reason, 'bad_request_target');
    assert.equal(run(state, conn, { headers: [host('api.test'), ['HOST', 'api.test']] }).reason, 'bad_request_target');
    assert.equal(run(state, conn, { headers: [host('user@api.test')] }).reason, 'bad_request_target');
    for (const method of ['CONNECT', 'TRACE']) assert.equal(run(state, conn, { method, headers: [host('api.test')] }).reason, 'method_not_allowed', method);
  });

  test('routes and forwards the normal form of the path, with the query as sent, and refuses ambiguous paths', (t) => {
    const { state } = stateOf(t);
    const conn = connection('api.test', null);
    const { reason, ctx } = run(state, conn, { url: '/%61dmin//x/../y?q=%2F', headers: [host('api.test')] });
    assert.equal(reason, null);
    assert.equal(ctx.target, '/admin/y?q=%2F');
    assert.equal(ctx.route?.path, '/admin');
    assert.equal(run(state, conn, { url: '/payments%2F..%2Fadmin', headers: [host('api.test')] }).reason, 'ambiguous_path');
  });
});

describe('requireClientCertificate', () => {
  test('on a clientAuth.mode: require site, answers a connection without a certificate no_certificate before any route is matched, and closes it', (t) => {
    const { state } = stateOf(t);
    for (const url of ['/v1/x', '/no-such-route']) {
      const { reason, ctx } = run(state, connection('mtls.test', noCertificate), { url, headers: [host('mtls.test')] });
      assert.equal(reason, 'no_certificate', url);
      assert.equal(ctx.route, null, 'no route matched: nothing is learnt about routes without a certificate');
      assert.equal((ctx.res as ServerResponse).shouldKeepAlive, false, 'the connection closes after the answer');
    }
  });

  test('answers an invalid certificate with its reason, and admits a valid one', (t) => {
    const { state } = stateOf(t);
    assert.equal(run(state, connection('mtls.test', refused(expired, 'CERT_HAS_EXPIRED')), { url: '/v1/x', headers: [host('mtls.test')] }).reason, 'expired');
    const admitted = run(state, connection('mtls.test', valid(partnerA)), { url: '/v1/x', headers: [host('mtls.test')] });
    assert.equal(admitted.reason, null);
    assert.equal((admitted.ctx.res as ServerResponse).shouldKeepAlive, true);
  });

  test('after a reload changed the site’s clientAuth, a connection judged under the old policy gets policy_changed and is closed, whatever its certificate', (t) => {
    const { state } = stateOf(t, reloaded);
    const before = connection('partners.test', valid(partnerA), '192.0.2.10', config);
    const { reason, ctx } = run(state, before, { url: '/public/x', headers: [host('partners.test')] });
    assert.equal(reason, 'policy_changed');
    assert.equal((ctx.res as ServerResponse).shouldKeepAlive, false);
    assert.equal(run(state, connection('partners.test', valid(partnerA), '192.0.2.10', reloaded), { url: '/public/x', headers: [host('partners.test')] }).reason, null, 'a connection made under the new policy is served');
  });
});

describe('matchRoute', () => {
  test('picks the longest prefix; a prefix without a trailing slash matches whole segments only', (t) => {
    const { state } = stateOf(t);
    const conn = connection('api.test', null);
    const routeOf = (url: string) => run(state, conn, { url, headers: [host('api.test')] }).ctx.route?.path;
    assert.equal(routeOf('/payments/refunds/7'), '/payments/refunds/');
    assert.equal(routeOf('/payments/7'), '/payments/');
    assert.equal(routeOf('/payments'), '/', '/payments/ is a plain prefix');
    assert.equal(routeOf('/admin'), '/admin');
    assert.equal(routeOf('/admin/users'), '/admin');
    assert.equal(routeOf('/admin?all=1'), '/admin');
    assert.equal(routeOf('/administrator'), '/');
  });

  test('answers no_route where no route of the site matches', (t) => {
    const { state } = stateOf(t);
    const { reason, ctx } = run(state, connection('partners.test', valid(partnerA)), { url: '/elsewhere', headers: [host('partners.test')] });
    assert.equal(reason, 'no_route');
    assert.equal(ctx.route, null);
  });
});

describe('authorizeClient', () => {
  test('clientCert: optional admits a client without a certificate, but not one whose certificate is invalid', (t) => {
    const { state } = stateOf(t);
    const request = { url: '/public/x', headers: [host('partners.test')] };
    assert.equal(run(state, connection('partners.test', noCertificate), request).reason, null);
    assert.equal(run(state, connection('partners.test', refused(expired, 'CERT_HAS_EXPIRED')), request).reason, 'expired');
  });

  test('a route requiring a certificate answers no_certificate without one and records the refusal with the request id and route', (t) => {
    const { state, events } = stateOf(t);
    const { reason, ctx } = run(state, connection('partners.test', noCertificate), { url: '/members/x', headers: [host('partners.test')] });
    assert.equal(reason, 'no_certificate');
    const rejected = events.filter((e) => e.event === 'client_cert_rejected');
    assert.deepEqual(
      rejected.map((e) => [e.reason, e.requestId, e.route]),
      [['no_certificate', ctx.id, '/members/']],
    );
    assert.equal(run(state, connection('partners.test', valid(partnerB)), { url: '/members/x', headers: [host('partners.test')] }).reason, null);
  });

  test("the route's allow-list admits a matching identity and answers identity_not_allowed to another valid certificate", async (t) => {
    const { state, events } = stateOf(t);
    const request = { url: '/partners/x', headers: [host('partners.test')] };
    assert.equal(run(state, connection('partners.test', valid(partnerA)), request).reason, null);
    const other = run(state, connection('partners.test', valid(partnerB)), request);
    assert.equal(other.reason, 'identity_not_allowed');
    const rejected = events.find((e) => e.event === 'client_cert_rejected');
    assert.equal(rejected?.reason, 'identity_not_allowed');
    assert.equal(rejected?.requestId, other.ctx.id);
    assert.match(await state.metrics.registry.metrics(), /portcullis_client_auth_failures_total\{reason="identity_not_allowed"\} 1/);
  });
});

describe('checkApiKey', () => {
  test('apiKeys: required answers missing_api_key with WWW-Authenticate: Bearer, and admits a valid key by its id', (t) => {
    const { state } = stateOf(t);
    const key = newApiKey();
    state.apiKeys.set([keyRecord(key)]);
    const conn = connection('api.test', null);
    const missing = run(state, conn, { url: '/keys/x', headers: [host('api.test')] });
    assert.equal(missing.reason, 'missing_api_key');
    assert.deepEqual(missing.ctx.responseHeaders, { 'www-authenticate': 'Bearer' });
    const admitted = run(state, conn, { url: '/keys/x', headers: [host('api.test'), bearer(key.key)] });
    assert.equal(admitted.reason, null);
    assert.equal(admitted.ctx.apiKeyId, key.id);
  });

  test('refuses unknown, revoked, expired, wrong-route and certificate-bound keys with their reasons, publishing api_key_rejected', (t) => {
    const { state, events } = stateOf(t);
    const [revoked, expiredKey, elsewhere, bound] = [newApiKey(), newApiKey(), newApiKey(), newApiKey()];
    state.apiKeys.set([
      keyRecord(revoked, { revokedAt: new Date().toISOString() }),
      keyRecord(expiredKey, { expiresAt: new Date(Date.now() - 1000).toISOString() }),
      keyRecord(elsewhere, { routes: ['/maybe-keys/'] }),
      keyRecord(bound, { bindUri: 'spiffe://example.test/partner-a' }),
    ]);
    const cases: [string, Reason][] = [
      [newApiKey().key, 'unknown_api_key'],
      [revoked.key, 'revoked_api_key'],
      [expiredKey.key, 'expired_api_key'],
      [elsewhere.key, 'key_not_allowed_for_route'],
      [bound.key, 'key_certificate_mismatch'],
    ];
    for (const [key, reason] of cases) {
      const { ctx, reason: got } = run(state, connection('api.test', null), { url: '/keys/x', headers: [host('api.test'), bearer(key)] });
      assert.equal(got, reason);
      assert.deepEqual(ctx.responseHeaders, { 'www-authenticate': `Bearer error="invalid_token", error_description="${reason}"` });
      const event = events.at(-1);
      assert.equal(event?.event, 'api_key_rejected');
      assert.equal(event?.reason, reason);
      assert.equal(event?.requestId, ctx.id);
    }
  });

  test('apiKeys: optional admits a request without a key, but checks a key that is presented', (t) => {
    const { state } = stateOf(t);
    const conn = connection('api.test', null);
    assert.equal(run(state, conn, { url: '/maybe-keys/x', headers: [host('api.test')] }).reason, null);
    assert.equal(run(state, conn, { url: '/maybe-keys/x', headers: [host('api.test'), bearer(newApiKey().key)] }).reason, 'unknown_api_key');
  });
});

describe('limitRate', () => {
  test('lets a burst through, then answers rate_limited with Retry-After and the RateLimit fields, counted per site and route', async (t) => {
    const { state } = stateOf(t);
    const conn = connection('api.test', null, '192.0.2.20');
    const request = { url: '/limited/x', headers: [host('api.test')] };
    assert.equal(run(state, conn, request).reason, null);
    assert.equal(run(state, conn, request).reason, null);
    const limited = run(state, conn, request);
    assert.equal(limited.reason, 'rate_limited');
    const fields = limited.ctx.responseHeaders as Record<string, string>;
    assert.deepEqual(Object.keys(fields).sort(), ['ratelimit-limit', 'ratelimit-remaining', 'ratelimit-reset', 'retry-after']);
    assert.ok(Number(fields['retry-after']) >= 1 && Number(fields['retry-after']) <= 100, `Retry-After ${fields['retry-after']}: the next token within 100 s at 0.01 rps`);
    assert.equal(fields['ratelimit-limit'], '2');
    assert.equal(fields['ratelimit-remaining'], '0');
    assert.match(await state.metrics.registry.metrics(), /portcullis_rate_limited_total\{site="api\.test",route="\/limited\/"\} 1/);
    assert.equal(run(state, connection('api.test', null, '192.0.2.21'), request).reason, null, 'another address has its own bucket');
  });

  test('counts a client with a valid certificate by its certificate, whatever its address', (t) => {
    const { state } = stateOf(t);
    const request = { url: '/members/x', headers: [host('partners.test')] };
    assert.equal(run(state, connection('partners.test', valid(partnerA), '192.0.2.30'), request).reason, null);
    assert.equal(run(state, connection('partners.test', valid(partnerA), '192.0.2.31'), request).reason, 'rate_limited', 'the same certificate from another address');
    assert.equal(run(state, connection('partners.test', valid(partnerB), '192.0.2.30'), request).reason, null, 'another certificate from the same address');
  });

  test('counts a client without a certificate by its API key, whatever its address', (t) => {
    const { state } = stateOf(t);
    const [k1, k2] = [newApiKey(), newApiKey()];
    state.apiKeys.set([keyRecord(k1), keyRecord(k2)]);
    const request = (key: string) => ({ url: '/metered-keys/x', headers: [host('api.test'), bearer(key)] });
    assert.equal(run(state, connection('api.test', null, '192.0.2.40'), request(k1.key)).reason, null);
    assert.equal(run(state, connection('api.test', null, '192.0.2.41'), request(k1.key)).reason, 'rate_limited', 'the same key from another address');
    assert.equal(run(state, connection('api.test', null, '192.0.2.40'), request(k2.key)).reason, null, 'another key from the same address');
  });
});

describe('prepareUpstreamRequest', () => {
  test('sends the Host as received, our forwarding fields and request id, the site’s identity header from the verdict, and drops hop-by-hop fields and forged identities', (t) => {
    const { state } = stateOf(t);
    const client = valid(partnerA);
    const { reason, ctx } = run(state, connection('partners.test', client, '192.0.2.50'), {
      url: '/members/x',
      headers: [
        host('partners.test:8443'),
        ['Connection', 'keep-alive, X-Internal'],
        ['X-Internal', 'secret'],
        ['TE', 'trailers'],
        ['X-Forwarded-For', '203.0.113.9'],
        ['X-Partner', 'forged'],
        ['X-Client-Cert', 'forged'],
        ['Accept', 'application/json'],
      ],
    });
    assert.equal(reason, null);
    assert.deepEqual(ctx.upstreamHeaders, { accept: 'application/json', ...forwardingFields(ctx, 'partners.test:8443', '192.0.2.50'), 'x-partner': (client as { header: string }).header });
  });

  test('extends X-Forwarded-For and keeps X-Forwarded-Proto from an address in trustedProxies', (t) => {
    const { state } = stateOf(t);
    const { ctx } = run(state, connection('api.test', null, '10.1.2.3'), { url: '/x', headers: [host('api.test'), ['X-Forwarded-For', '203.0.113.9'], ['X-Forwarded-Proto', 'http']] });
    assert.equal(ctx.upstreamHeaders?.['x-forwarded-for'], '203.0.113.9, 10.1.2.3');
    assert.equal(ctx.upstreamHeaders?.['x-forwarded-proto'], 'http');
  });

  test('never forwards one of our API keys: not on a key route, nor in an Authorization header on a route without keys, where another Authorization is forwarded', (t) => {
    const { state } = stateOf(t);
    const key = newApiKey();
    state.apiKeys.set([keyRecord(key)]);
    const conn = connection('api.test', null);
    assert.equal(run(state, conn, { url: '/keys/x', headers: [host('api.test'), bearer(key.key)] }).ctx.upstreamHeaders?.authorization, undefined);
    assert.equal(run(state, conn, { url: '/x', headers: [host('api.test'), bearer(key.key)] }).ctx.upstreamHeaders?.authorization, undefined);
    assert.equal(run(state, conn, { url: '/x', headers: [host('api.test'), ['Authorization', 'Basic dXNlcjpwYXNz']] }).ctx.upstreamHeaders?.authorization, 'Basic dXNlcjpwYXNz');
  });
});
