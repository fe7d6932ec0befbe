import assert from 'node:assert/strict';
import { EventEmitter, once } from 'node:events';
import type { IncomingHttpHeaders } from 'node:http';
import { createServer, Http2ServerRequest, Http2ServerResponse, type ServerHttp2Stream } from 'node:http2';
import { Duplex } from 'node:stream';
import { describe, test } from 'node:test';
import type { Reason } from '../../src/errors.js';
import { decide } from '../../src/proxy/pipeline.js';
import { RequestContext, type ProxyState } from '../../src/proxy/request-context.js';
import type { ConnectionInfo } from '../../src/tls/index.js';
import { clientPreface, flag, frame, frameType, requestBlock } from '../helpers/h2-raw.js';
import { config, connection, expired, forwardingFields, noCertificate, partnerA, refused, reloaded, stateOf, valid } from '../helpers/pipeline-harness.js';

/**
 * What the request pipeline's phases do differently for HTTP/2 requests
 * (pipeline.test.ts covers the rest with HTTP/1.1 ones): the request is built
 * from Node's own compat classes, Http2ServerRequest and Http2ServerResponse,
 * over a stand-in stream with no session, socket or network behind it, and
 * run through `decide` like the HTTP/1.1 ones. The first test checks that
 * request against the one Node's HTTP/2 server makes of the same bytes.
 */

type Field = readonly [string, string];

/**
 * The session of the stand-in stream. The phases only close it: Node's
 * close() sends GOAWAY and ends the session once its open streams are done.
 */
class ObservedSession {
  closes = 0;

  close(): void {
    this.closes++;
  }
}

/**
 * Header fields Node's HTTP/2 server keeps the first value of when a client
 * repeats them, among those the tests send: its `kSingleValueHeaders`
 * (lib/internal/http2/util.js, the same list in Node 20 and 24) has more.
 */
const keptOnce = new Set([':method', ':scheme', ':authority', ':path', 'host', 'authorization']);

/**
 * `req.headers` as Node's HTTP/2 server builds it from the header list
 * (`toHeaderObject`): cookie fields joined with "; " (RFC 9113 §8.2.3), other
 * repeated fields with ", ", unless Node keeps them once.
 */
function headersOf(list: readonly Field[]): IncomingHttpHeaders {
  const headers: Record<string, string> = Object.create(null);
  for (const [name, value] of list) {
    const existing = headers[name];
    if (existing === undefined) headers[name] = value;
    else if (!keptOnce.has(name)) headers[name] = `${existing}${name === 'cookie' ? '; ' : ', '}${value}`;
  }
  return headers;
}

/**
 * A request context for an HTTP/2 request on `conn` whose header list, as
 * decoded from HPACK (names in lower case, RFC 9113 §8.2.1), is `list`. The
 * compat constructors only subscribe to the stream's events; the phases only
 * reach its session.
 */
function injectHttp2(state: ProxyState, conn: ConnectionInfo, list: readonly Field[]): { ctx: RequestContext; session: ObservedSession } {
  const session = new ObservedSession();
  const stream = Object.assign(new EventEmitter(), { session }) as unknown as ServerHttp2Stream;
  const req = new Http2ServerRequest(stream, headersOf(list), {}, list.flat());
  return { ctx: new RequestContext(req, new Http2ServerResponse(stream), conn, state, null), session };
}

/** Injects the request and runs the phases: the reason, the context they filled in, and the session. */
function run(state: ProxyState, conn: ConnectionInfo, list: readonly Field[]): { reason: Reason | null; ctx: RequestContext; session: ObservedSession } {
  const injected = injectHttp2(state, conn, list);
  return { reason: decide(injected.ctx), ...injected };
}

/**
 * The header list of a request as an HTTP/2 client sends it: the
 * pseudo-header fields (without :authority when it is null), in the order
 * `requestBlock` (h2-raw.ts) encodes them, then `fields`.
 */
function request(authority: string | null, path = '/', fields: readonly Field[] = []): Field[] {
  const pseudo: Field[] = [[':method', 'GET'], [':scheme', 'https'], [':path', path]];
  if (authority !== null) pseudo.push([':authority', authority]);
  return [...pseudo, ...fields];
}

/** A connection that negotiated h2 with ALPN. */
const h2Connection = (...args: Parameters<typeof connection>): ConnectionInfo => ({ ...connection(...args), alpn: 'h2' });

describe('injectHttp2', () => {
  test('builds the request Node’s HTTP/2 server hands its request listener for the same header list', async (t) => {
    // the server reads a client's bytes from an in-memory socket: real HPACK decoding and nghttp2 checks, no network
    const socket = new Duplex({ read() {}, write: (_chunk, _encoding, done) => done() });
    t.after(() => socket.destroy());
    const server = createServer();
    server.emit('connection', socket);
    const received = once(server, 'request');
    const fields: Field[] = [['host', 'partners.test'], ['cookie', 'a=1'], ['x-list', '1'], ['cookie', 'b=2'], ['x-list', '2'], ['authorization', 'Bearer one'], ['authorization', 'Bearer two']];
    socket.push(Buffer.concat([clientPreface, frame(frameType.headers, flag.endHeaders | flag.endStream, 1, requestBlock('API.test:8443', '/a/../b?q', 'GET', fields))]));
    const [real] = (await received) as [Http2ServerRequest];
    const { state } = stateOf(t);
    const injected = injectHttp2(state, h2Connection('api.test', null), request('API.test:8443', '/a/../b?q', fields)).ctx.req as Http2ServerRequest;
    assert.deepEqual(injected.rawHeaders, real.rawHeaders);
    assert.deepEqual(Object.entries(injected.headers), Object.entries(real.headers));
    assert.deepEqual([injected.httpVersionMajor, injected.method, injected.url, injected.authority], [real.httpVersionMajor, real.method, real.url, real.authority]);
  });
});

describe('limitHeaders over an HTTP/2 header list', () => {
  // The pseudo-header fields of GET / for api.test count 7 + 3 + 32 (:method), 7 + 5 + 32 (:scheme), 5 + 1 + 32 (:path)
  // and 10 + 8 + 32 (:authority): 174 bytes, and no request line besides.
  const padTo = (bytes: number): Field => ['x-pad', 'p'.repeat(bytes - 174 - 'x-pad'.length - 32)];

  test('counts the pseudo-header fields and no request line: a list of exactly limits.maxHeaderBytes is admitted, one byte more is headers_too_large', (t) => {
    const { state } = stateOf(t);
    const conn = h2Connection('api.test', null);
    assert.equal(run(state, conn, request('api.test', '/', [padTo(1024)])).reason, null);
    const over = run(state, conn, request('api.test', '/', [padTo(1025)]));
    assert.equal(over.reason, 'headers_too_large');
    assert.equal(over.ctx.detail, '1025 bytes; limits.maxHeaderBytes is 1024');
    // a :path 851 bytes longer than "/" makes the same 1025 bytes
    const longPath = `/${'a'.repeat(851)}`;
    assert.equal(run(state, conn, request('api.test', longPath.slice(0, -1))).reason, null);
    assert.equal(run(state, conn, request('api.test', longPath)).reason, 'headers_too_large');
  });

  test('admits limits.maxHeaderFields fields besides the pseudo-header fields, refuses one more, and counts the cookie fields an HTTP/2 client splits its cookies into as one', (t) => {
    const { state } = stateOf(t);
    const conn = h2Connection('api.test', null);
    const fields = (n: number, extra: readonly Field[] = []) => request('api.test', '/', [...Array.from({ length: n }, (_, i): Field => [`x-f${i}`, 'v']), ...extra]);
    assert.equal(run(state, conn, fields(16)).reason, null, '16 fields and 4 pseudo-header fields');
    const over = run(state, conn, fields(17));
    assert.equal(over.reason, 'headers_too_large');
    assert.equal(over.ctx.detail, '17 fields; limits.maxHeaderFields is 16');
    const cookies = Array.from({ length: 5 }, (_, i): Field => ['cookie', `c${i}=1`]);
    assert.equal(run(state, conn, fields(15, cookies)).reason, null, '15 fields and 5 cookie fields are 16');
    assert.equal(run(state, conn, fields(16, cookies)).reason, 'headers_too_large', '16 fields and 5 cookie fields are 17');
  });
});

describe('resolveSite from :authority', () => {
  test('binds the request to the site :authority names, in any case and with a port, and forwards :authority as sent', (t) => {
    const { state } = stateOf(t);
    const { reason, ctx } = run(state, h2Connection('api.test', null), request('API.Test:8443', '/x'));
    assert.equal(reason, null);
    assert.equal(ctx.site?.id, 'api.test');
    assert.equal(ctx.host, 'api.test');
    assert.equal(ctx.authority, 'API.Test:8443');
    assert.equal(ctx.upstreamHeaders?.host, 'API.Test:8443');
  });

  test('takes Host when the request has no :authority, and refuses a request with neither with bad_request_target', (t) => {
    const { state } = stateOf(t);
    const conn = h2Connection('api.test', null);
    const { reason, ctx } = run(state, conn, request(null, '/x', [['host', 'eu.api.test']]));
    assert.equal(reason, null);
    assert.equal(ctx.authority, 'eu.api.test');
    assert.equal(run(state, conn, request(null, '/x')).reason, 'bad_request_target');
  });

  test('binds :authority, not a Host that disagrees with it, to the TLS server name: that Host is neither refused nor forwarded', (t) => {
    const { state } = stateOf(t);
    const conn = h2Connection('api.test', null);
    const { reason, ctx } = run(state, conn, request('api.test', '/x', [['host', 'partners.test']]));
    assert.equal(reason, null);
    assert.equal(ctx.site?.id, 'api.test');
    assert.equal(ctx.upstreamHeaders?.host, 'api.test', ':authority replaces Host upstream');
    assert.equal(ctx.upstreamHeaders?.['x-forwarded-host'], 'api.test');
    assert.equal(run(state, conn, request('partners.test', '/x', [['host', 'api.test']])).reason, 'sni_host_mismatch', 'a Host of this site does not cover an :authority of another');
  });

  test('refuses an :authority of another site with sni_host_mismatch, one no site claims with unknown_host, a malformed one and a repeated Host with bad_request_target', (t) => {
    const { state } = stateOf(t);
    const conn = h2Connection('api.test', null);
    const cases: [Field[], Reason][] = [
      [request('partners.test', '/x'), 'sni_host_mismatch'],
      [request('nobody.test', '/x'), 'unknown_host'],
      [request('user@api.test', '/x'), 'bad_request_target'],
      // nghttp2 resets a stream with two Host fields (PROTOCOL_ERROR) before Node makes a request of it: this is the pipeline's own check behind it
      [request('api.test', '/x', [['host', 'api.test'], ['host', 'api.test']]), 'bad_request_target'],
    ];
    for (const [list, reason] of cases) assert.equal(run(state, conn, list).reason, reason, JSON.stringify(list.slice(3)));
  });
});

describe('the target from :path', () => {
  test('routes and forwards the normal form of :path, with the query as sent, and refuses an ambiguous :path', (t) => {
    const { state } = stateOf(t);
    const conn = h2Connection('api.test', null);
    const { reason, ctx } = run(state, conn, request('api.test', '/%61dmin//x/../y?q=%2F'));
    assert.equal(reason, null);
    assert.equal(ctx.target, '/admin/y?q=%2F');
    assert.equal(ctx.route?.path, '/admin');
    assert.equal(run(state, conn, request('api.test', '/payments%2F..%2Fadmin')).reason, 'ambiguous_path');
  });

  test('takes a :path in absolute form (nghttp2 lets one through under a :scheme other than http and https) as an absolute-form target whose authority replaces :authority', (t) => {
    const { state } = stateOf(t);
    const conn = h2Connection('api.test', null);
    const absolute = (path: string): Field[] => [[':method', 'GET'], [':scheme', 'foo'], [':path', path], [':authority', 'api.test']];
    const { reason, ctx } = run(state, conn, absolute('https://eu.api.test/x?q'));
    assert.equal(reason, null);
    assert.equal(ctx.authority, 'eu.api.test');
    assert.equal(ctx.target, '/x?q');
    assert.equal(run(state, conn, absolute('https://partners.test/x')).reason, 'sni_host_mismatch');
  });
});

describe('requireClientCertificate over HTTP/2', () => {
  const mtls = (path: string) => request('mtls.test', path);
  const keepAlive = (ctx: RequestContext) => (ctx.res as { shouldKeepAlive?: boolean }).shouldKeepAlive;

  test('on a clientAuth.mode: require site, answers a request without a certificate no_certificate before any route is matched, and closes the session, not the response', (t) => {
    const { state } = stateOf(t);
    for (const path of ['/v1/x', '/no-such-route']) {
      const { reason, ctx, session } = run(state, h2Connection('mtls.test', noCertificate), mtls(path));
      assert.equal(reason, 'no_certificate', path);
      assert.equal(ctx.route, null, 'no route matched');
      assert.equal(session.closes, 1, 'the session is closed (GOAWAY): the connection takes no more requests');
      assert.equal(keepAlive(ctx), undefined, 'the HTTP/1.1 way of closing is not taken');
    }
  });

  test('answers an invalid certificate with its reason and closes the session; a valid one is served on a session left open', (t) => {
    const { state } = stateOf(t);
    const invalid = run(state, h2Connection('mtls.test', refused(expired, 'CERT_HAS_EXPIRED')), mtls('/v1/x'));
    assert.equal(invalid.reason, 'expired');
    assert.equal(invalid.session.closes, 1);
    const admitted = run(state, h2Connection('mtls.test', valid(partnerA)), mtls('/v1/x'));
    assert.equal(admitted.reason, null);
    assert.equal(admitted.session.closes, 0);
  });

  test('after a reload changed the site’s clientAuth, answers a connection judged under the old policy policy_changed and closes its session', (t) => {
    const { state } = stateOf(t, reloaded);
    const list = request('partners.test', '/public/x');
    const old = run(state, h2Connection('partners.test', valid(partnerA), '192.0.2.10', config), list);
    assert.equal(old.reason, 'policy_changed');
    assert.equal(old.session.closes, 1);
    const current = run(state, h2Connection('partners.test', valid(partnerA), '192.0.2.10', reloaded), list);
    assert.equal(current.reason, null);
    assert.equal(current.session.closes, 0);
  });

  test('refuses all the same on a stream that has lost its session, as Node leaves a destroyed stream', (t) => {
    const { state } = stateOf(t);
    const { ctx, session } = injectHttp2(state, h2Connection('mtls.test', noCertificate), mtls('/v1/x'));
    // what Http2Stream's _destroy leaves behind (lib/internal/http2/core.js)
    Object.assign((ctx.req as Http2ServerRequest).stream, { session: undefined, destroyed: true });
    assert.equal(decide(ctx), 'no_certificate');
    assert.equal(session.closes, 0);
  });
});

describe('prepareUpstreamRequest from an HTTP/2 request', () => {
  test('sends no pseudo-header field, :authority as Host, the cookie fields joined with "; ", no TE, and our forwarding fields and identity header', (t) => {
    const { state } = stateOf(t);
    const client = valid(partnerA);
    const { reason, ctx } = run(
      state,
      h2Connection('partners.test', client, '192.0.2.50'),
      request('partners.test:8443', '/members/x', [
        ['cookie', 'a=1'],
        ['accept', 'application/json'],
        ['cookie', 'b=2'],
        // the one connection-specific field HTTP/2 allows (RFC 9113 §8.2.2)
        ['te', 'trailers'],
        ['x-forwarded-for', '203.0.113.9'],
        ['x-partner', 'forged'],
      ]),
    );
    assert.equal(reason, null);
    assert.deepEqual(ctx.upstreamHeaders, { accept: 'application/json', cookie: 'a=1; b=2', ...forwardingFields(ctx, 'partners.test:8443', '192.0.2.50'), 'x-partner': (client as { header: string }).header });
  });
});
