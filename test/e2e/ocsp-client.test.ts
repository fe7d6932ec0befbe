import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { FetchError } from '../../src/trust/fetch-bounded.js';
import { OcspError, ocspResponderOf, queryOcsp, verifyOcspResponse, type OcspAnswer } from '../../src/trust/ocsp.js';
import { certificateOf, expectOcspStatus, startOcspResponder, testLimits, type OcspResponder } from '../helpers/ocsp-responder.js';
import { TestPki, type Ca, type Leaf } from '../helpers/pki.js';
import { suiteScope } from '../helpers/proxy.js';

const pki = new TestPki();
after(() => pki.cleanup());
const day = 86_400_000;

/** Runs `fn` and returns the OcspError it must reject with. */
async function ocspErrorOf(fn: () => Promise<unknown>): Promise<OcspError> {
  try {
    await fn();
  } catch (err) {
    assert.ok(err instanceof OcspError, `expected an OcspError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected an OcspError, got an answer');
}

describe('OCSP client against openssl ocsp', () => {
  const scope = suiteScope();
  let root: Ca;
  let ca: Ca;
  let foreign: Ca;
  let good: Leaf;
  let other: Leaf;
  let revoked: Leaf;
  let alien: Leaf;
  let revokedBefore: number;
  let revokedAfter: number;
  let responder: OcspResponder;
  const ask = (leaf: Leaf, issuer: Ca, r: OcspResponder = responder, opts: { nonce?: boolean } = {}) =>
    queryOcsp(certificateOf(leaf.certFile), certificateOf(issuer.certFile), r.url, testLimits, opts);

  before(async () => {
    root = pki.root('ocsp-root');
    ca = pki.intermediate('ocsp-ca', root);
    foreign = pki.root('ocsp-foreign');
    good = pki.leaf('ocsp-good', ca, { dns: ['good.test'] });
    other = pki.leaf('ocsp-other', ca, { dns: ['other.test'] });
    revoked = pki.leaf('ocsp-revoked', ca, { dns: ['revoked.test'] });
    alien = pki.leaf('ocsp-alien', foreign, { dns: ['alien.test'] });
    revokedBefore = Math.floor(Date.now() / 1000) * 1000;
    // with a reason, so that the RevokedInfo carries one (pki.revoke gives none)
    execFileSync('openssl', ['ca', '-batch', '-config', join(ca.dir, 'ca.cnf'), '-cert', ca.certFile, '-keyfile', ca.keyFile, '-revoke', revoked.certFile, '-crl_reason', 'keyCompromise'], { stdio: 'ignore' });
    revokedAfter = Date.now();
    responder = await startOcspResponder(scope, pki, ca, { nmin: 10 });
  });

  test('reads the OCSP responder URL from the authority information access extension', () => {
    const named = pki.leaf('ocsp-named', ca, { ocspUrl: 'http://ocsp.example.test/ca', crlUrl: 'http://crl.example.test/ca.crl' });
    assert.equal(ocspResponderOf(certificateOf(named.certFile)), 'http://ocsp.example.test/ca');
    assert.equal(ocspResponderOf(certificateOf(good.certFile)), null);
  });

  test('reports a certificate in good standing with its validity window', async () => {
    const answer = await ask(good, ca);
    assert.equal(answer.status, 'good');
    assert.equal(answer.revokedAt, null);
    assert.equal(answer.revocationReason, null);
    assert.ok(answer.nextUpdate);
    assert.equal(answer.nextUpdate.getTime() - answer.thisUpdate.getTime(), 10 * 60_000);
    assert.ok(answer.der.length > 0);
  });

  test('reports a revoked certificate with its revocation time and reason', async () => {
    const answer = await ask(revoked, ca);
    assert.equal(answer.status, 'revoked');
    assert.ok(answer.revokedAt);
    assert.ok(answer.revokedAt.getTime() >= revokedBefore && answer.revokedAt.getTime() <= revokedAfter, `revoked at ${answer.revokedAt.toISOString()}`);
    assert.equal(answer.revocationReason, 'keyCompromise');
  });

  test('reports a certificate revoked while the responder runs', async () => {
    const late = pki.leaf('ocsp-late', ca, { dns: ['late.test'] });
    // the responder reads the index on every request: a new certificate is good at once, a revocation shows at once
    await expectOcspStatus(responder, late.certFile, ca, 'good');
    pki.revoke(ca, late.certFile);
    const answer = await expectOcspStatus(responder, late.certFile, ca, 'revoked');
    assert.equal(answer.revocationReason, null, 'pki.revoke records no reason');
  });

  test('reports unknown for a serial the CA never issued, asked under that CA', async () => {
    // the foreign leaf's serial with ocsp-ca as issuer: the responder serves that CA and has no such serial
    const answer = await ask(alien, ca);
    assert.equal(answer.status, 'unknown');
  });

  test('refuses the answer about a certificate of another CA, which that CA did not sign', async () => {
    // asked with its true issuer: openssl serves no such CA, says unknown, and signs with ocsp-ca
    const err = await ocspErrorOf(() => ask(alien, foreign));
    assert.equal(err.code, 'unauthorized_responder');
  });

  test('sends a nonce on request and accepts the answer that echoes it', async () => {
    const answer = await ask(good, ca, responder, { nonce: true });
    assert.equal(answer.status, 'good');
  });

  test('refuses an answer whose nonce differs from the one sent, and accepts one without a nonce', async () => {
    const withNonce = await ask(good, ca, responder, { nonce: true });
    const err = await ocspErrorOf(() => verifyOcspResponse(withNonce.der, certificateOf(good.certFile), certificateOf(ca.certFile), new Date(), randomBytes(32)));
    assert.equal(err.code, 'nonce_mismatch');
    const withoutNonce = await ask(good, ca);
    const answer = await verifyOcspResponse(withoutNonce.der, certificateOf(good.certFile), certificateOf(ca.certFile), new Date(), randomBytes(32));
    assert.equal(answer.status, 'good');
  });

  test('refuses a response about another certificate of the same CA', async () => {
    const answer = await ask(other, ca);
    const err = await ocspErrorOf(() => verifyOcspResponse(answer.der, certificateOf(good.certFile), certificateOf(ca.certFile)));
    assert.equal(err.code, 'wrong_certificate');
  });

  test('refuses a response past its nextUpdate or whose thisUpdate is more than five minutes ahead', async () => {
    const answer = await ask(good, ca);
    const check = (now: Date) => verifyOcspResponse(answer.der, certificateOf(good.certFile), certificateOf(ca.certFile), now);
    assert.equal((await ocspErrorOf(() => check(new Date(answer.nextUpdate!.getTime() + 1000)))).code, 'stale');
    assert.equal((await ocspErrorOf(() => check(new Date(answer.thisUpdate.getTime() - 6 * 60_000)))).code, 'stale');
    assert.equal((await check(new Date(answer.thisUpdate.getTime() - 4 * 60_000))).status, 'good', 'four minutes of clock skew are tolerated');
  });

  test('accepts a response without nextUpdate for an hour after its thisUpdate, and refuses it as stale after', async (t) => {
    const r = await startOcspResponder(t, pki, ca);
    const answer = await ask(good, ca, r);
    assert.equal(answer.nextUpdate, null);
    const at = (ms: number) => verifyOcspResponse(answer.der, certificateOf(good.certFile), certificateOf(ca.certFile), new Date(answer.thisUpdate.getTime() + ms));
    assert.equal((await at(59 * 60_000)).status, 'good');
    assert.equal((await ocspErrorOf(() => at(61 * 60_000))).code, 'stale', 'an old answer could be replayed to hide a revocation');
  });

  test('accepts a response the issuer signed, naming itself by key hash and including no certificate', async (t) => {
    const r = await startOcspResponder(t, pki, ca, { byKey: true, noCerts: true });
    assert.equal((await ask(good, ca, r)).status, 'good');
  });

  test('accepts a response from a delegated responder with the OCSPSigning extended key usage', async (t) => {
    const delegate = pki.leaf('ocsp-delegate', ca, { eku: 'OCSPSigning', subject: '/CN=ocsp-ca responder' });
    const byName = await startOcspResponder(t, pki, ca, { signer: delegate });
    assert.equal((await ask(good, ca, byName)).status, 'good');
    const byKey = await startOcspResponder(t, pki, ca, { signer: delegate, byKey: true });
    assert.equal((await ask(revoked, ca, byKey)).status, 'revoked');
  });

  const refusedDelegates: [string, (issuer: Ca) => Leaf][] = [
    ['without the OCSPSigning extended key usage', (issuer) => pki.leaf('ocsp-delegate-no-eku', issuer, { eku: 'serverAuth', subject: '/CN=no-eku responder' })],
    ['whose certificate has expired', (issuer) => pki.leaf('ocsp-delegate-expired', issuer, { eku: 'OCSPSigning', subject: '/CN=expired responder', notBefore: new Date(Date.now() - 30 * day), notAfter: new Date(Date.now() - day) })],
    ['certified by another CA', () => pki.leaf('ocsp-delegate-foreign', foreign, { eku: 'OCSPSigning', subject: '/CN=foreign responder' })],
  ];
  for (const [name, make] of refusedDelegates) {
    test(`refuses a delegated responder ${name}`, async (t) => {
      const r = await startOcspResponder(t, pki, ca, { signer: make(ca) });
      const err = await ocspErrorOf(() => ask(good, ca, r));
      assert.equal(err.code, 'unauthorized_responder', err.message);
    });
  }

  test('refuses a responder that signs with an unrelated CA', async (t) => {
    const r = await startOcspResponder(t, pki, ca, { signer: foreign });
    const err = await ocspErrorOf(() => ask(good, ca, r));
    assert.equal(err.code, 'unauthorized_responder');
  });

  test('verifies RSA-PSS signatures of an RSA issuer', async (t) => {
    const rsaCa = pki.intermediate('ocsp-rsa-ca', root, { key: 'rsa' });
    const leaf = pki.leaf('ocsp-rsa-leaf', rsaCa, { dns: ['rsa.test'] });
    const r = await startOcspResponder(t, pki, rsaCa, { args: ['-rsigopt', 'rsa_padding_mode:pss', '-rmd', 'sha384'] });
    assert.equal((await ask(leaf, rsaCa, r)).status, 'good');
  });

  test('refuses a response signed with SHA-1', async (t) => {
    const r = await startOcspResponder(t, pki, ca, { args: ['-rmd', 'sha1'] });
    const err = await ocspErrorOf(() => ask(good, ca, r));
    assert.equal(err.code, 'bad_signature');
  });

  test('reports a responder that is down as unreachable, with the fetch failure as cause', async (t) => {
    const r = await startOcspResponder(t, pki, ca);
    await r.stop();
    const err = await ocspErrorOf(() => ask(good, ca, r));
    assert.equal(err.code, 'unreachable');
    assert.ok(err.cause instanceof FetchError);
    assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${r.port}`));
  });
});

describe('OCSP client against broken responders', () => {
  const scope = suiteScope();
  let ca: Ca;
  let good: Leaf;
  let genuine: Buffer;
  let body: Buffer = Buffer.alloc(0);
  let url: string;

  before(async () => {
    ca = pki.root('ocsp-broken-ca');
    good = pki.leaf('ocsp-broken-good', ca, { dns: ['good.test'] });
    const responder = await startOcspResponder(scope, pki, ca, { nmin: 10 });
    genuine = (await queryOcsp(certificateOf(good.certFile), certificateOf(ca.certFile), responder.url, testLimits)).der;
    // a responder that answers whatever the test sets
    const server = createServer((req, res) => {
      req.resume();
      req.on('end', () => res.writeHead(200, { 'content-type': 'application/ocsp-response' }).end(body));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    scope.after(() => new Promise((resolve) => server.close(resolve)));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  });

  const answerWith = (bytes: Buffer): Promise<OcspAnswer> => {
    body = bytes;
    return queryOcsp(certificateOf(good.certFile), certificateOf(ca.certFile), url, testLimits);
  };

  test('refuses garbage bytes and a truncated response as malformed', async () => {
    for (const bytes of [Buffer.from('this is not OCSP'), Buffer.alloc(0), genuine.subarray(0, genuine.length >> 1), Buffer.from([0x30, 0x03, 0x0a, 0x01, 0x00])]) {
      const err = await ocspErrorOf(() => answerWith(bytes));
      assert.equal(err.code, 'malformed', `${bytes.toString('hex')}: ${err.message}`);
    }
  });

  test('reports an unsuccessful response status by its name', async () => {
    const tryLater = Buffer.from(new pkijs.OCSPResponse({ responseStatus: new asn1js.Enumerated({ value: 3 }) }).toSchema().toBER());
    const err = await ocspErrorOf(() => answerWith(tryLater));
    assert.equal(err.code, 'unsuccessful');
    assert.match(err.message, /tryLater/);
  });

  test('ends every single-byte corruption of a response in an OcspError or an unchanged answer', async () => {
    const cert = certificateOf(good.certFile);
    const issuer = certificateOf(ca.certFile);
    const codes = new Set<string>();
    for (let i = 0; i < genuine.length; i++) {
      const bytes = Buffer.from(genuine);
      bytes[i] = (bytes[i] as number) ^ 0x5a;
      try {
        const answer = await verifyOcspResponse(bytes, cert, issuer);
        assert.equal(answer.status, 'good', `byte ${i}`);
      } catch (err) {
        assert.ok(err instanceof OcspError, `byte ${i}: ${String(err)}`);
        codes.add(err.code);
      }
    }
    assert.ok(codes.has('malformed') && codes.has('bad_signature'), [...codes].join(', '));
  });
});
