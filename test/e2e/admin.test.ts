import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { runCli, startCli } from '../helpers/cli-process.js';
import { curl, resolveTo, run } from '../helpers/clients.js';
import { tempDir, type Scope } from '../helpers/proxy.js';
import { rsaKeyRange } from '../properties/admin.js';

const cli = (dir: string, ...args: string[]) => runCli([...args, '--config', join(dir, 'portcullis.yaml')]);

/** A key and a CSR made by openssl that asks for names of its own choosing (which must be ignored). */
async function csr(dir: string, name: string, keyArgs: readonly string[] = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']): Promise<{ key: string; csr: string }> {
  const key = join(dir, `${name}.key`);
  const out = join(dir, `${name}.csr`);
  const made = await run('openssl', ['req', '-new', ...keyArgs, '-nodes', '-keyout', key, '-out', out, '-subj', '/CN=admin/O=Evil', '-addext', 'subjectAltName=DNS:evil.test,URI:spiffe://example.test/admin']);
  assert.equal(made.code, 0, made.stderr);
  return { key, csr: out };
}

/** A CLI instance with an admin listener and an mTLS site trusting the built-in CA; resolves with its ports and the admin token. */
async function startWithAdmin(t: Scope, dir: string, extra = '') {
  writeFileSync(
    join(dir, 'portcullis.yaml'),
    `dataDir: state
listen: { https: "127.0.0.1:0", admin: "127.0.0.1:0" }
${extra}sites:
  - hosts: [api.test]
    certificates: [{ internal: true }]
    clientAuth: { mode: require, ca: [state/ca/ca.pem], crl: [state/ca/ca.crl] }
    routes: [{ path: /, upstream: "builtin:whoami" }]
`,
  );
  assert.equal((await cli(dir, 'ca', 'init')).code, 0, 'the CA and its first CRL, which the site trusts');
  const proc = startCli(t, ['start', '--config', join(dir, 'portcullis.yaml')], dir);
  const admin = Number((await proc.waitFor(/"admin":"127\.0\.0\.1:(\d+)"/))[1]);
  const port = Number((await proc.waitFor(/"https":"127\.0\.0\.1:(\d+)"/))[1]);
  return { proc, admin, port, token: readFileSync(join(dir, 'state', 'admin', 'token'), 'utf8').trim(), caFile: join(dir, 'state', 'ca', 'ca.pem') };
}

const enroll = (caFile: string, admin: number, token: string, csrFile: string, out: string) =>
  curl(['--cacert', caFile, '-H', `Authorization: Bearer ${token}`, '-H', 'Content-Type: application/pkcs10', '--data-binary', `@${csrFile}`, '-o', out, '-w', '%{http_code} %{content_type}', `https://127.0.0.1:${admin}/v1/enroll`]);

describe('the admin listener', () => {
  test('enrolls a partner: the token is single-use, the names come from the token, the CSR key is certified, and the certificate opens an mTLS site', async (t) => {
    const dir = tempDir(t);
    writeFileSync(join(dir, 'portcullis.yaml'), 'dataDir: state\n');
    assert.equal((await cli(dir, 'ca', 'init')).code, 0);
    const made = await cli(dir, 'ca', 'enroll-token', '--name', 'billing', '--uri', 'spiffe://example.test/billing', '--dns', 'billing.partner.test', '--days', '10');
    assert.equal(made.code, 0, made.stderr);
    const token = (/^(pce_\S+)$/m.exec(made.stdout) as RegExpExecArray)[1] as string;
    const db = readFileSync(join(dir, 'state', 'ca', 'db.json'), 'utf8');
    assert.ok(!db.includes(token.split('_').at(-1) as string), 'the database keeps no token secret');
    const { caFile, admin, port } = await startWithAdmin(t, dir);

    // a weak key or a body that is no CSR is refused without spending the token
    const weak = await csr(dir, 'weak', ['-newkey', 'rsa:1024']);
    const refusedWeak = await enroll(caFile, admin, token, weak.csr, join(dir, 'weak.out'));
    assert.equal(refusedWeak.stdout, '400 application/json');
    assert.equal(JSON.parse(readFileSync(join(dir, 'weak.out'), 'utf8')).reason, 'weak_csr_key');
    writeFileSync(join(dir, 'garbage.csr'), 'hello');
    await enroll(caFile, admin, token, join(dir, 'garbage.csr'), join(dir, 'garbage.out'));
    assert.equal(JSON.parse(readFileSync(join(dir, 'garbage.out'), 'utf8')).reason, 'bad_csr');
    // a CSR that parses but whose public key does not (its RSAPublicKey SEQUENCE tag zeroed) is bad_csr too, not a 500
    const broken = await csr(dir, 'broken', ['-newkey', 'rsa:2048', '-outform', 'DER']);
    const der = readFileSync(broken.csr);
    der[rsaKeyRange(der).start] = 0x00;
    writeFileSync(broken.csr, der);
    const refusedBroken = await enroll(caFile, admin, token, broken.csr, join(dir, 'broken.out'));
    assert.equal(refusedBroken.stdout, '400 application/json');
    assert.equal(JSON.parse(readFileSync(join(dir, 'broken.out'), 'utf8')).reason, 'bad_csr');
    const forged = await csr(dir, 'forged');
    await enroll(caFile, admin, token.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A')), forged.csr, join(dir, 'forged.out'));
    assert.equal(JSON.parse(readFileSync(join(dir, 'forged.out'), 'utf8')).reason, 'unknown_enrollment_token');

    const partner = await csr(dir, 'partner');
    const chainFile = join(dir, 'partner.chain.pem');
    const ok = await enroll(caFile, admin, token, partner.csr, chainFile);
    assert.equal(ok.stdout, '200 application/pem-certificate-chain');
    const leaf = new X509Certificate(readFileSync(chainFile));
    assert.equal(leaf.subject, 'CN=billing', 'the subject comes from the token, not the CSR');
    assert.equal(leaf.subjectAltName, 'DNS:billing.partner.test, URI:spiffe://example.test/billing');
    assert.ok(leaf.checkPrivateKey(createPrivateKey(readFileSync(partner.key))), 'the CSR key is the certified one');
    assert.ok(leaf.verify(new X509Certificate(readFileSync(caFile)).publicKey));
    assert.equal(leaf.keyUsage?.join(), '1.3.6.1.5.5.7.3.2');
    const lifetimeDays = (Date.parse(leaf.validTo) - Date.parse(leaf.validFrom)) / 86_400_000;
    assert.ok(lifetimeDays > 9.9 && lifetimeDays < 10.1, `${lifetimeDays} days`);

    const replay = await csr(dir, 'replay');
    const again = await enroll(caFile, admin, token, replay.csr, join(dir, 'again.out'));
    assert.equal(again.stdout, '403 application/json');
    assert.equal(JSON.parse(readFileSync(join(dir, 'again.out'), 'utf8')).reason, 'used_enrollment_token');

    const call = await curl([...resolveTo('api.test', port), '--cacert', caFile, '--cert', chainFile, '--key', partner.key, '-w', '\n%{http_code}', `https://api.test:${port}/`]);
    assert.match(call.stdout, /spiffe:\/\/example\.test\/billing[\s\S]*200$/);
    const list = await cli(dir, 'ca', 'list');
    assert.match(list.stdout, new RegExp(`${leaf.serialNumber}\\s+client\\s+billing`));
    assert.match(list.stdout, /token [0-9a-f]{16}\s+billing\s+used .* for [0-9A-F]+/);
  });

  test('serves /metrics to the admin token only, with the proxy metrics and the outcome of reloads and rotations', async (t) => {
    const dir = tempDir(t);
    const { admin, token, caFile, proc } = await startWithAdmin(t, dir);
    assert.equal(statSync(join(dir, 'state', 'admin', 'token')).mode & 0o777, 0o600);
    const scrape = (auth: string[]) => curl(['--cacert', caFile, ...auth, '-w', '\n%{http_code}', `https://127.0.0.1:${admin}/metrics`]);
    const anonymous = await scrape([]);
    assert.match(anonymous.stdout, /"reason":"admin_unauthorized"[\s\S]*401$/);
    assert.match((await scrape(['-H', 'Authorization: Bearer pca_wrong'])).stdout, /401$/);
    await proc.waitFor(/"event":"admin_unauthorized"/);

    // the internal certificate gone: the reload issues a new one and swaps it in
    rmSync(join(dir, 'state', 'internal', 'api.test.pem'));
    assert.equal((await cli(dir, 'reload')).code, 0);
    await proc.waitFor(/"event":"certificate_rotated"/);
    const metrics = (await scrape(['-H', `Authorization: Bearer ${token}`])).stdout;
    assert.match(metrics, /200$/);
    assert.match(metrics, /portcullis_reloads_total\{trigger="control",result="applied",code=""\} 1/);
    assert.match(metrics, /portcullis_certificate_rotations_total\{site="[^"]+"\} 1/);
    assert.match(metrics, /portcullis_config_last_reload_successful 1/);
    assert.match(metrics, /portcullis_certificate_expiry_seconds\{site="[^"]+",role="served",certificate="[^"]+"\} \d+/);

    // a rotation the pre-swap checks refuse (a key of another pair) is counted, and the gauge says an older config serves
    const other = await csr(dir, 'other');
    writeFileSync(join(dir, 'state', 'internal', 'api.test.key'), readFileSync(other.key));
    await proc.waitFor(/"event":"reload_refused","trigger":"certificate files changed"/);
    const after = (await scrape(['-H', `Authorization: Bearer ${token}`])).stdout;
    assert.match(after, /portcullis_reloads_total\{trigger="files",result="refused",code="PCL_CONFIG_INVALID"\} 1/);
    assert.match(after, /portcullis_config_last_reload_successful 0/);

    // the admin listener speaks only the profile's protocols
    const old = await run('openssl', ['s_client', '-connect', `127.0.0.1:${admin}`, '-tls1_1'], '', 10_000);
    assert.notEqual(old.code, 0);
  });

  test('in cluster mode, sums the workers\' counters into one scrape', async (t) => {
    const dir = tempDir(t);
    const { admin, token, caFile, port } = await startWithAdmin(t, dir, 'workers: 2\n');
    // plain HTTP to the TLS port is refused by whichever worker takes the connection
    for (let i = 0; i < 4; i++) await curl(['-s', `http://127.0.0.1:${port}/`]);
    const metrics = (await curl(['--cacert', caFile, '-H', `Authorization: Bearer ${token}`, `https://127.0.0.1:${admin}/metrics`])).stdout;
    assert.match(metrics, /portcullis_connections_refused_total\{reason="plaintext_http"\} 4/);
    assert.match(metrics, /portcullis_config_last_reload_successful 1/);
  });
});
