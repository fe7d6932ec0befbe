import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { upstreamRequestHeaders, type ForwardingFacts } from '../../src/proxy/header-hygiene.js';

const key = 'pck_0123456789ab_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';
const facts = (extra: Partial<ForwardingFacts> = {}): ForwardingFacts => ({
  clientAddress: '192.0.2.1',
  authority: 'api.test',
  requestId: 'r1',
  trustedProxies: null,
  identityHeaders: new Set(['x-client-cert']),
  identityHeader: 'x-client-cert',
  identity: null,
  apiKeyHeader: 'authorization',
  keyRoute: false,
  ...extra,
});

describe('API key credentials on the way upstream', () => {
  test('on a route that takes keys, the key header is never forwarded, in any spelling', () => {
    const out = upstreamRequestHeaders({ 'x-api-key': 'anything', x_api_key: 'anything', authorization: 'Basic dXNlcjpwYXNz' }, facts({ apiKeyHeader: 'x-api-key', keyRoute: true }));
    assert.equal(out['x-api-key'], undefined);
    assert.equal(out.x_api_key, undefined, 'CGI-style stacks read x_api_key as x-api-key');
    assert.equal(out.authorization, 'Basic dXNlcjpwYXNz', 'other credentials pass');
  });

  test('on any route, an Authorization or key header value carrying one of our keys is dropped', () => {
    for (const keyRoute of [false, true]) {
      const out = upstreamRequestHeaders({ authorization: `Bearer ${key}`, 'x-api-key': key, x_api_key: key }, facts({ apiKeyHeader: 'x-api-key', keyRoute }));
      assert.equal(out.authorization, undefined, `Authorization, keyRoute ${keyRoute}`);
      assert.equal(out['x-api-key'], undefined, `key header, keyRoute ${keyRoute}`);
      assert.equal(out.x_api_key, undefined, `key header in CGI spelling, keyRoute ${keyRoute}`);
    }
  });

  test('elsewhere, credentials that are not our keys pass through', () => {
    const out = upstreamRequestHeaders({ authorization: 'Bearer eyJhbGciOi.payload.sig', 'x-api-key': 'their-own-key' }, facts({ apiKeyHeader: 'x-api-key' }));
    assert.equal(out.authorization, 'Bearer eyJhbGciOi.payload.sig');
    assert.equal(out['x-api-key'], 'their-own-key');
  });
});
