import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { syncBuiltinESMExports } from 'node:module';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, mock, test } from 'node:test';
import { ApiKeyRing, newApiKey, presentedApiKey, readApiKeys, type ApiKeyRecord } from '../../src/access/index.js';
import { PortcullisError } from '../../src/errors.js';
import type { ClientCertificate } from '../../src/trust/index.js';

const record = (key: ReturnType<typeof newApiKey>, extra: Partial<ApiKeyRecord> = {}): ApiKeyRecord => ({
  id: key.id,
  name: 'test',
  hash: key.hash,
  routes: null,
  createdAt: new Date(0).toISOString(),
  expiresAt: null,
  revokedAt: null,
  bindCert: null,
  bindUri: null,
  rotatedTo: null,
  ...extra,
});

const withCert = (fingerprint: string, uris: string[] = []) => ({ status: 'valid', identity: { fingerprint, uris } }) as unknown as ClientCertificate;

describe('API keys', () => {
  test('are compared with crypto.timingSafeEqual on their hashes, never with ===', () => {
    const key = newApiKey();
    const ring = new ApiKeyRing();
    ring.set([record(key)]);
    const spy = mock.method(crypto, 'timingSafeEqual');
    syncBuiltinESMExports();
    try {
      assert.equal(ring.verify(key.key, '/', null).ok, true);
      assert.equal(ring.verify(`${key.key.slice(0, -1)}${key.key.endsWith('A') ? 'B' : 'A'}`, '/', null).ok, false);
      assert.equal(spy.mock.callCount(), 2, 'both the right and the wrong secret went through the constant-time comparison');
    } finally {
      spy.mock.restore();
      syncBuiltinESMExports();
    }
  });

  test('verdicts: unknown, revoked, expired, route and binding, in that order of precedence', () => {
    const now = Date.parse('2026-06-01T00:00:00Z');
    const [a, b, c, d, e] = [newApiKey(), newApiKey(), newApiKey(), newApiKey(), newApiKey()];
    const ring = new ApiKeyRing();
    ring.set([
      record(a, { revokedAt: '2026-01-01T00:00:00Z', expiresAt: '2026-02-01T00:00:00Z' }),
      record(b, { expiresAt: '2026-05-31T23:59:59Z' }),
      record(c, { routes: ['/v1/'] }),
      record(d, { bindCert: 'sha256:AA', bindUri: 'spiffe://x/a' }),
      record(e, { expiresAt: '2026-06-01T00:00:01Z' }),
    ]);
    const reason = (key: string, route = '/v1/', client: ClientCertificate | null = null) => {
      const v = ring.verify(key, route, client, now);
      return v.ok ? 'ok' : v.reason;
    };
    assert.equal(reason(newApiKey().key), 'unknown_api_key', 'well-formed, but not in the store');
    assert.equal(reason(a.key), 'revoked_api_key');
    assert.equal(reason(b.key), 'expired_api_key');
    assert.equal(reason(c.key, '/v2/'), 'key_not_allowed_for_route');
    assert.equal(reason(c.key), 'ok');
    assert.equal(reason(d.key, '/v1/', withCert('sha256:AA')), 'key_certificate_mismatch', 'both bindings must hold');
    assert.equal(reason(d.key, '/v1/', withCert('sha256:AA', ['spiffe://x/a'])), 'ok');
    assert.equal(reason(e.key), 'ok', 'valid until its expiry');
  });

  test('are read from Authorization: Bearer, or from a header of their own as is', () => {
    assert.equal(presentedApiKey({ authorization: 'Bearer pck_x' }, 'authorization'), 'pck_x');
    assert.equal(presentedApiKey({ authorization: 'bearer   pck_x ' }, 'authorization'), 'pck_x');
    assert.equal(presentedApiKey({ authorization: 'Basic dXNlcjpwYXNz' }, 'authorization'), null);
    assert.equal(presentedApiKey({ 'x-api-key': ' pck_y ' }, 'x-api-key'), 'pck_y');
    assert.equal(presentedApiKey({ 'x-api-key': '' }, 'x-api-key'), null);
  });

  test('a store entry that is not a valid record is refused with its index and the fix, never a TypeError', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pcl-keys-'));
    try {
      const good = record(newApiKey());
      const refusal = (keys: unknown[]) => {
        writeFileSync(join(dir, 'api-keys.json'), JSON.stringify({ version: 1, keys }));
        try {
          readApiKeys(dir);
          return 'read';
        } catch (err) {
          assert.ok(err instanceof PortcullisError, String(err));
          assert.equal(err.code, 'PCL_API_KEYS_INVALID');
          return err.message.slice(dir.length + '/api-keys.json '.length);
        }
      };
      assert.equal(refusal([good]), 'read');
      assert.match(refusal([good, null]), /^keys\[1\] is not an object .*; fix or remove that entry$/);
      assert.match(refusal([7]), /^keys\[0\] is not an object/);
      assert.equal(refusal([{ ...good, rotatedTo: 'next' }]), 'keys[0]: rotatedTo is not a key id (12 hex digits); fix or remove that entry');
      assert.equal(refusal([good, { ...good, name: 'copy' }]), `keys[1]: id ${good.id} appears twice; fix or remove that entry`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
