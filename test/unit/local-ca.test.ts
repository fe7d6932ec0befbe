import assert from 'node:assert/strict';
import crypto, { X509Certificate } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { join } from 'node:path';
import { mock, test } from 'node:test';
import { ensureLocalCa, signCertificate } from '../../src/pki/index.js';
import { run } from '../helpers/clients.js';
import { tempDir } from '../helpers/proxy.js';

test('serial numbers are 16 octets starting 01-7f, printed as openssl and Node print them, whatever the random first octet', async (t) => {
  const dir = tempDir(t);
  const ca = await ensureLocalCa(dir);
  const { publicKey } = (await crypto.webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify'])) as crypto.webcrypto.CryptoKeyPair;
  // the octets that once gave a serial with a leading zero (0x00, 0x80) or needing a sign octet (0x80, 0xff)
  for (const first of [0x00, 0x01, 0x7f, 0x80, 0xff]) {
    const random = mock.method(crypto, 'randomBytes', (n: number) => Buffer.alloc(n, first));
    syncBuiltinESMExports();
    // the serial is drawn before signCertificate's first await
    const signing = signCertificate(ca, { commonName: 'serial', usage: 'client', lifetimeDays: 1 }, publicKey);
    random.mock.restore();
    syncBuiltinESMExports();
    const leaf = await signing;
    assert.match(leaf.serial, /^(0[1-9A-F]|[1-7][0-9A-F])[0-9A-F]{30}$/, `first random octet ${first}`);
    assert.equal(new X509Certificate(leaf.certPem).serialNumber, leaf.serial, `first random octet ${first}`);
    const file = join(dir, `leaf-${first}.pem`);
    writeFileSync(file, leaf.certPem);
    assert.equal((await run('openssl', ['x509', '-in', file, '-noout', '-serial'])).stdout.trim(), `serial=${leaf.serial}`, `first random octet ${first}`);
  }
});
