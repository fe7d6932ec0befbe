import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { CaStore, CsrError, EnrollmentError, requestedPublicKey } from '../../src/pki/index.js';
import { tempDir } from '../helpers/proxy.js';
import { untilPast } from '../helpers/wait.js';

/** A CSR made by openssl, as a partner would. */
function makeCsr(dir: string, name: string, keyArgs: string[]): Buffer {
  execFileSync('openssl', ['req', '-new', ...keyArgs, '-nodes', '-keyout', join(dir, `${name}.key`), '-out', join(dir, `${name}.csr`), '-subj', '/CN=x'], { stdio: 'ignore' });
  return readFileSync(join(dir, `${name}.csr`));
}

const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'];
const request = { commonName: 'billing', uris: ['spiffe://example.test/billing'], dns: [], lifetimeDays: 30 };

async function refusal(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof EnrollmentError || err instanceof CsrError) return err.reason;
    throw err;
  }
  return 'accepted';
}

describe('enrollment tokens', () => {
  test('of two concurrent uses of one token exactly one gets a certificate', async (t) => {
    const dir = tempDir(t);
    const store = await CaStore.open(dir);
    const key = await requestedPublicKey(makeCsr(dir, 'a', ec));
    const { token } = await store.createEnrollment({ ...request, validForMs: 60_000 });
    const outcomes = await Promise.all([refusal(store.enroll(token, key)), refusal(store.enroll(token, key)), refusal(store.enroll(token, key))]);
    assert.deepEqual(outcomes.sort(), ['accepted', 'used_enrollment_token', 'used_enrollment_token']);
    assert.equal(store.list().length, 1);
  });

  test('an expired token is refused and stays unspent', async (t) => {
    const dir = tempDir(t);
    const store = await CaStore.open(dir);
    const { token, record } = await store.createEnrollment({ ...request, validForMs: 1 });
    await untilPast(Date.parse(record.expiresAt));
    assert.equal(await refusal(store.enroll(token, await requestedPublicKey(makeCsr(dir, 'a', ec)))), 'expired_enrollment_token');
    assert.equal(store.enrollments().find((e) => e.id === record.id)?.usedAt, null);
    assert.equal(store.list().length, 0);
  });

  test('a token of another shape, or with a wrong secret, is unknown', async (t) => {
    const dir = tempDir(t);
    const store = await CaStore.open(dir);
    const key = await requestedPublicKey(makeCsr(dir, 'a', ec));
    const { record } = await store.createEnrollment({ ...request, validForMs: 60_000 });
    assert.equal(await refusal(store.enroll('pce_nothing', key)), 'unknown_enrollment_token');
    assert.equal(await refusal(store.enroll(`pce_${record.id}_${'A'.repeat(43)}`, key)), 'unknown_enrollment_token');
  });

  test('CSRs: EC, RSA and Ed25519 keys are read; small RSA, other curves, tampered signatures and garbage are refused', async (t) => {
    const dir = tempDir(t);
    for (const args of [ec, ['-newkey', 'rsa:2048'], ['-newkey', 'ed25519']]) await requestedPublicKey(makeCsr(dir, 'ok', args));
    assert.equal(await refusal(requestedPublicKey(makeCsr(dir, 'small', ['-newkey', 'rsa:1024']))), 'weak_csr_key');
    assert.equal(await refusal(requestedPublicKey(makeCsr(dir, 'k1', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:secp256k1']))), 'weak_csr_key');
    const good = makeCsr(dir, 'tamper', ec);
    const der = Buffer.from(good.toString().replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
    // flip a bit of the last signature byte: the key and names parse, the proof of possession fails
    der[der.length - 1] = (der[der.length - 1] as number) ^ 1;
    assert.equal(await refusal(requestedPublicKey(der)), 'bad_csr');
    assert.equal(await refusal(requestedPublicKey(Buffer.from('not a csr'))), 'bad_csr');
  });
});
