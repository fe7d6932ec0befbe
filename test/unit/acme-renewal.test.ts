import assert from 'node:assert/strict';
import { webcrypto } from 'node:crypto';
import { describe, test } from 'node:test';
import { ariCertId, renewalTime, retryDelay, timeInWindow } from '../../src/acme/renewal.js';
import { x509 } from '../../src/pki/index.js';

const day = 86_400_000;

describe('ACME renewal planning', () => {
  test('renews once a third of the lifetime is left, up to a thirtieth earlier at random', () => {
    const from = Date.UTC(2026, 0, 1);
    const to = from + 90 * day;
    assert.equal(renewalTime(from, to, 0), to - 30 * day);
    assert.equal(renewalTime(from, to, 0.999_999), to - 30 * day - 0.999_999 * 3 * day);
  });

  test('backs off from 10 s to a ceiling of 6 hours, with ±10 % jitter', () => {
    assert.equal(retryDelay(1, 0.5), 10_000);
    assert.equal(retryDelay(2, 0.5), 30_000);
    assert.equal(retryDelay(100, 0.5), 21_600_000);
    assert.equal(retryDelay(1, 0), 9_000);
    assert.ok(retryDelay(1, 0.999) < 11_000);
  });

  test('picks a moment inside the ARI window, or now once the window has begun to pass', () => {
    const now = Date.UTC(2026, 5, 1);
    assert.equal(timeInWindow({ start: now + day, end: now + 3 * day }, 0.5, now), now + 2 * day);
    assert.equal(timeInWindow({ start: now - 3 * day, end: now - day }, 0.5, now), now);
  });

  test('computes the ARI certificate identifier of RFC 9773 §4.1 (its example: AKI 69:88:5B… and serial 00:87:65:43:21)', async () => {
    const keys = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: '0087654321',
      name: 'CN=ari',
      notBefore: new Date(),
      notAfter: new Date(Date.now() + day),
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      keys,
      extensions: [new x509.AuthorityKeyIdentifierExtension('69885b6b87464041e1b37b847ba0ae2cde01c8d4')],
    });
    assert.equal(ariCertId(cert.toString('pem')), 'aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE');
  });
});
