import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { pino } from 'pino';
import { Metrics } from '../../src/observe/index.js';
import type { FetchError } from '../../src/trust/index.js';
import { DenyList, denyEntry, fetchBounded, normaliseSerial, parseCrl, RevocationChecker } from '../../src/trust/index.js';
import { crlCovers, distributionPointsOf, issuerKeyOf, verifyCrl } from '../../src/trust/crl.js';
import { TestPki } from '../helpers/pki.js';
import type { Scope } from '../helpers/proxy.js';

const pki = new TestPki();
after(() => pki.cleanup());
const root = pki.root('unit-revocation-root');
const leaf = pki.leaf('unit-revocation-leaf', root, { eku: 'clientAuth', crlUrl: 'http://crl.example.test/a.crl' });
const cert = new X509Certificate(leaf.certPem);
const rootCert = new X509Certificate(readFileSync(root.certFile));

describe('serials and deny entries', () => {
  for (const [input, expected] of [
    ['00ab:cd', 'ABCD'],
    ['1000', '1000'],
    ['0000', '0'],
    ['1f', '1F'],
  ] as const) {
    test(`normalises serial ${input} to ${expected}`, () => assert.equal(normaliseSerial(input), expected));
  }

  const now = new Date('2026-11-28T00:00:00Z');
  const refusals: [string, Parameters<typeof denyEntry>[0], RegExp][] = [
    ['nothing to block', {}, /give --fingerprint sha256:…, or --serial HEX with --issuer/],
    ['a fingerprint and a serial', { fingerprint: `sha256:${'00'.repeat(32)}`, serial: '01' }, /either --fingerprint, or --serial with --issuer, not both/],
    ['a short fingerprint', { fingerprint: 'sha256:abcd' }, /is not a SHA-256 fingerprint/],
    ['a serial without issuer', { serial: '01' }, /--serial HEX with --issuer/],
    ['a serial that is not hex', { serial: 'xyz', issuer: 'CN=a' }, /not a hexadecimal serial number/],
    ['an issuer that is not a name', { serial: '01', issuer: 'Example CA' }, /not a distinguished name/],
  ];
  for (const [name, target, message] of refusals) {
    test(`refuses ${name} with the fix`, () => {
      const entry = denyEntry(target, null, now);
      assert.equal(typeof entry, 'string');
      assert.match(entry as string, message);
    });
  }

  test('matches a certificate by fingerprint, and by serial and issuer whatever the case and spacing', () => {
    const byFingerprint = denyEntry({ fingerprint: `SHA256:${cert.fingerprint256.replace(/:/g, '').toLowerCase()}` }, null, now);
    const issuer = `CN=unit-revocation-root, O=Portcullis Tests`.split(', ').reverse().join(' , ').toLowerCase();
    const bySerial = denyEntry({ serial: `00${cert.serialNumber.toLowerCase()}`, issuer }, 'lost', now);
    const unrelated = denyEntry({ serial: cert.serialNumber, issuer: 'CN=someone else' }, null, now);
    assert.equal(typeof bySerial, 'object');
    assert.equal(new DenyList([byFingerprint as never]).match(cert), byFingerprint);
    assert.equal(new DenyList([bySerial as never]).match(cert), bySerial);
    assert.equal(new DenyList([unrelated as never]).match(cert), null);
    assert.equal(DenyList.empty.match(cert), null);
    const opensslOrder = denyEntry({ serial: cert.serialNumber, issuer: 'O = Portcullis Tests, CN = unit-revocation-root' }, null, now);
    assert.equal(new DenyList([opensslOrder as never]).match(cert), opensslOrder, 'the issuer as openssl prints it');
  });

  test('refuses a resumed session whose CA certificates are unknown here while the deny list holds entries, whatever the policy', () => {
    const checker = new RevocationChecker(pino({ level: 'silent' }), new Metrics());
    const resumed = { leaf: cert, chain: null };
    assert.deepEqual(checker.check(resumed, null), { outcome: 'good' }, 'nothing to check against');
    checker.setDenyList([denyEntry({ fingerprint: `sha256:${'AB'.repeat(32)}` }, null, now) as never]);
    const decision = checker.check(resumed, null);
    assert.equal(decision instanceof Promise, false);
    assert.equal((decision as { outcome: string }).outcome, 'unavailable');
    assert.equal((decision as { failClosed?: boolean }).failClosed, true);
    checker.stop();
  });
});

describe('CRLs', () => {
  test('reads the distribution points of a certificate, http(s) only', () => {
    assert.deepEqual(distributionPointsOf(cert), ['http://crl.example.test/a.crl']);
    assert.deepEqual(distributionPointsOf(rootCert), []);
  });

  test('verifies a CRL against the CA that signed it and refuses one from an impostor with the same name', async () => {
    pki.revoke(root, leaf.certFile);
    const good = parseCrl(readFileSync(pki.crl(root, join(pki.dir, 'unit.crl'))), 'unit.crl');
    const verified = await verifyCrl(good, [rootCert], 'unit.crl');
    assert.equal(verified.issuerKey, issuerKeyOf(rootCert));
    assert.ok(verified.revoked.has(normaliseSerial(cert.serialNumber)));
    const other = pki.root('unit-other');
    const impostor = pki.intermediate('unit-impostor', other, { commonName: 'unit-revocation-root' });
    const forged = parseCrl(readFileSync(pki.crl(root, join(pki.dir, 'forged.crl'), { signedBy: impostor })), 'forged.crl');
    await assert.rejects(verifyCrl(forged, [rootCert], 'forged.crl'), { code: 'bad_signature', message: /forged.crl names .* as its issuer but that CA's key did not sign it/ });
    await assert.rejects(verifyCrl(good, [new X509Certificate(readFileSync(other.certFile))], 'unit.crl'), { code: 'unknown_issuer', message: /not a CA of clientAuth.ca/ });
    const future = parseCrl(readFileSync(pki.crl(root, join(pki.dir, 'future.crl'), { lastUpdate: new Date(Date.now() + 3_600_000) })), 'future.crl');
    await assert.rejects(verifyCrl(future, [rootCert], 'future.crl'), { code: 'not_yet_valid' });
  });

  test('reads the scope of a CRL with an issuing distribution point, and refuses an indirect one', async () => {
    const idp = (lines: string[]) => ['issuingDistributionPoint = critical, @idp', '[ idp ]', ...lines];
    const load = async (name: string, lines: string[]) => verifyCrl(parseCrl(readFileSync(pki.crl(root, join(pki.dir, name), { extensions: idp(lines) })), name), [rootCert], name);
    const users = await load('users.crl', ['fullname = URI:http://crl.example.test/a.crl', 'onlyuser = TRUE']);
    assert.deepEqual(users.scope, { onlyUserCerts: true, onlyCaCerts: false, distributionPoints: ['http://crl.example.test/a.crl'] });
    assert.equal(crlCovers(users.scope, cert, distributionPointsOf(cert)), true);
    assert.equal(crlCovers(users.scope, cert, ['http://crl.example.test/other.crl']), false, 'another partition of the CA');
    assert.equal(crlCovers(users.scope, rootCert, distributionPointsOf(cert)), false, 'a CA certificate');
    await assert.rejects(load('indirect.crl', ['indirectCRL = TRUE']), { code: 'unsupported', message: /indirect CRL/ });
  });

  test('says which file is not a CRL', () => {
    assert.throws(() => parseCrl(Buffer.from('garbage'), 'x.crl'), { code: 'malformed', message: /x.crl is not a CRL/ });
  });
});

async function serve(t: Scope, handler: Parameters<typeof createServer>[1]): Promise<string> {
  const server = createServer(handler);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('bounded fetches of revocation documents', () => {
  const limits = { timeoutMs: 2_000, maxBytes: 1_000 };

  test('follows an http redirect and refuses one to another scheme', async (t) => {
    const origin = await serve(t, (req, res) => {
      if (req.url === '/moved') res.writeHead(302, { location: '/crl' }).end();
      else if (req.url === '/ldap') res.writeHead(302, { location: 'ldap://ldap.example.test/cn=crl' }).end();
      else res.end('crl bytes');
    });
    assert.equal((await fetchBounded(`${origin}/moved`, limits)).toString(), 'crl bytes');
    await assert.rejects(fetchBounded(`${origin}/ldap`, limits), (err: FetchError) => err.code === 'redirect' && /not an http\(s\) URL/.test(err.message));
  });

  test('refuses a body over the size limit, announced or not', async (t) => {
    const origin = await serve(t, (req, res) => {
      if (req.url === '/announced') res.writeHead(200, { 'content-length': '5000' }).end('x'.repeat(5000));
      else {
        res.writeHead(200);
        res.end('x'.repeat(5000));
      }
    });
    await assert.rejects(fetchBounded(`${origin}/announced`, limits), { code: 'too_large' });
    await assert.rejects(fetchBounded(`${origin}/chunked`, limits), { code: 'too_large' });
  });

  test('gives up on a server that never finishes', async (t) => {
    const origin = await serve(t, (_req, res) => {
      res.writeHead(200, { 'content-length': '100' });
      res.write('partial');
    });
    await assert.rejects(fetchBounded(`${origin}/`, { timeoutMs: 300, maxBytes: 1_000 }), { code: 'timeout' });
  });

  test('reports an HTTP error status and refuses non-http URLs', async (t) => {
    const origin = await serve(t, (_req, res) => res.writeHead(503).end());
    await assert.rejects(fetchBounded(`${origin}/`, limits), { code: 'http_status', message: /answered HTTP 503/ });
    await assert.rejects(fetchBounded('file:///etc/passwd', limits), { code: 'bad_url' });
  });
});
