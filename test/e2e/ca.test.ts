import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdirSync, readFileSync, statSync, watch, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { cliEnv, runCli, startCli, tsxImport } from '../helpers/cli-process.js';
import { curl, resolveTo, run } from '../helpers/clients.js';
import { startProxy, tempDir, type Scope } from '../helpers/proxy.js';
import { whenever } from '../helpers/wait.js';

const ca = (dir: string, ...args: string[]) => runCli(['ca', ...args, '--config', join(dir, 'portcullis.yaml')]);

/** An mTLS site (with the CA's CRL on the HTTP listener) trusting `trust` and `crls`; `call(name)` requests it with name.chain.pem and name.key. */
async function caSite(t: Scope, dir: string, state: string, trust: readonly string[], crls: readonly string[]) {
  assert.equal((await ca(dir, 'issue-server', '--host', 'api.test', '--out', dir)).code, 0);
  const p = await startProxy(
    t,
    `dataDir: state
listen: { https: "127.0.0.1:0", http: "127.0.0.1:0" }
ca: { crlPath: /pki/ca.crl }
sites:
  - hosts: [api.test]
    certificates: [{ cert: api.test.chain.pem, key: api.test.key }]
    clientAuth: { mode: require, ca: [${trust.map((f) => join(state, f)).join(', ')}], crl: [${crls.map((f) => join(state, f)).join(', ')}] }
    routes: [{ path: /, upstream: "builtin:whoami" }]
`,
    dir,
  );
  const call = (name: string) =>
    curl([...resolveTo('api.test', p.port), '--cacert', join(state, 'ca.pem'), '--cert', join(dir, `${name}.chain.pem`), '--key', join(dir, `${name}.key`), '-w', '\n%{http_code}', `https://api.test:${p.port}/`]);
  return { p, call };
}

describe('the built-in CA', () => {
  test('issues a client certificate (PEM and PKCS#12) that an mTLS site accepts, and after ca revoke refuses', async (t) => {
    const dir = tempDir(t);
    writeFileSync(join(dir, 'portcullis.yaml'), 'dataDir: state\n');
    const init = await ca(dir, 'init');
    assert.equal(init.code, 0, init.stderr);
    assert.equal(statSync(join(dir, 'state', 'ca', 'ca.key')).mode & 0o777, 0o600);
    writeFileSync(join(dir, 'pw'), 'correct horse battery\n');
    const issued = await ca(dir, 'issue-client', '--name', 'billing', '--uri', 'spiffe://example.test/billing', '--out', dir, '--p12-password-file', join(dir, 'pw'));
    assert.equal(issued.code, 0, issued.stderr);
    const serial = /serial ([0-9A-F]+)/.exec(issued.stdout)?.[1] as string;
    assert.equal(statSync(join(dir, 'billing.key')).mode & 0o777, 0o600);

    // openssl reads the bundle back (no legacy algorithms needed) and finds the same key and certificate
    const p12 = await run('openssl', ['pkcs12', '-in', join(dir, 'billing.p12'), '-passin', `file:${join(dir, 'pw')}`, '-nodes']);
    assert.equal(p12.code, 0, p12.stderr);
    assert.match(p12.stdout, /subject=CN = billing/);
    assert.match(p12.stdout, /BEGIN PRIVATE KEY/);
    const wrong = await run('openssl', ['pkcs12', '-in', join(dir, 'billing.p12'), '-passin', 'pass:wrong password', '-nodes']);
    assert.notEqual(wrong.code, 0);

    const state = join(dir, 'state', 'ca');
    const { p, call: callAs } = await caSite(t, dir, state, ['ca.pem'], ['ca.crl']);
    const call = () => callAs('billing');
    const ok = await call();
    assert.match(ok.stdout, /200$/);
    assert.match(ok.stdout, /spiffe:\/\/example\.test\/billing/);

    const revoked = await ca(dir, 'revoke', serial, '--reason', 'keyCompromise');
    assert.equal(revoked.code, 0, revoked.stderr);
    await p.waitForLog((l) => l.event === 'crl_loaded' && l.revoked === 1, { timeoutMs: 40_000 });
    const refused = await call();
    assert.match(refused.stdout, /"reason":"revoked"[\s\S]*403$/);

    // the proxy publishes the CA's current CRL over plain HTTP, DER, as distribution points serve it
    const published = join(dir, 'published.crl');
    const fetched = await curl(['-o', published, '-w', '%{http_code} %{content_type}', `http://127.0.0.1:${p.proxy.httpAddress?.port}/pki/ca.crl`]);
    assert.equal(fetched.stdout, '200 application/pkix-crl');
    const served = await run('openssl', ['crl', '-inform', 'DER', '-in', published, '-noout', '-text', '-CAfile', join(state, 'ca.pem')]);
    assert.match(served.stderr + served.stdout, /verify OK/);
    assert.match(served.stdout, new RegExp(`Serial Number: ${serial}`));

    const list = await ca(dir, 'list');
    assert.match(list.stdout, new RegExp(`${serial}\\s+client\\s+billing .*revoked .*keyCompromise`));
    const crl = await run('openssl', ['crl', '-in', join(state, 'ca.crl'), '-noout', '-text', '-CAfile', join(state, 'ca.pem')]);
    assert.match(crl.stderr + crl.stdout, /verify OK/);
    assert.match(crl.stdout, /X509v3 CRL Number: \n\s+2\n/, 'init published CRL 1, the revocation CRL 2');
    assert.match(crl.stdout, new RegExp(`Serial Number: ${serial}`));
  });

  test('keeps its database whole through a kill -9 in the middle of an issue loop, with no serial twice', async (t) => {
    const dir = tempDir(t);
    writeFileSync(join(dir, 'portcullis.yaml'), 'dataDir: state\n');
    assert.equal((await ca(dir, 'init')).code, 0);
    const db = join(dir, 'state', 'ca', 'db.json');
    const loop = spawn(
      process.execPath,
      [...tsxImport, '--input-type=module', '-e', `import { CaStore } from ${JSON.stringify(join(import.meta.dirname, '..', '..', 'src', 'pki', 'index.ts'))}; const s = await CaStore.open(${JSON.stringify(join(dir, 'state'))}); for (let i = 0; ; i++) { await s.issue({ commonName: 'loop-' + i, usage: 'client', lifetimeDays: 1 }); if (i % 3 === 0) await s.revoke(s.list().at(-1).serial); }`],
      { stdio: 'ignore', env: cliEnv },
    );
    t.after(() => loop.kill('SIGKILL'));
    const issuedSoFar = () => (existsSync(db) ? (JSON.parse(readFileSync(db, 'utf8')) as { issued: unknown[] }).issued.length : 0);
    // waiting on the fact (enough certificates issued), read again each time the loop replaces the file (by a rename in its folder)
    const folder = watch(join(dir, 'state', 'ca'));
    t.after(() => folder.close());
    await whenever(folder, 'change', () => (issuedSoFar() >= 12 ? true : undefined), { what: '12 certificates issued by the loop', timeoutMs: 30_000 });
    loop.kill('SIGKILL');
    await once(loop, 'exit');

    const list = await ca(dir, 'list');
    assert.equal(list.code, 0, list.stderr);
    const serials = list.stdout.trim().split('\n').map((l) => l.split(/\s+/)[0]);
    assert.ok(serials.length >= 12);
    assert.equal(new Set(serials).size, serials.length, 'no serial twice');
    // the lock the killed process may have left is taken over
    const after = await ca(dir, 'issue-client', '--name', 'after-crash', '--out', dir);
    assert.equal(after.code, 0, after.stderr);
    const crl = await run('openssl', ['crl', '-in', join(dir, 'state', 'ca', 'ca.crl'), '-noout', '-CAfile', join(dir, 'state', 'ca', 'ca.pem')]);
    assert.match(crl.stderr + crl.stdout, /verify OK/, 'the CRL on disk is whole and signed');
  });
});

describe('the built-in CA with an intermediate', () => {
  test('signs leaves with the intermediate, publishes one CRL per CA, and a site configured as ca init prints accepts and then revokes them', async (t) => {
    const dir = tempDir(t);
    writeFileSync(join(dir, 'portcullis.yaml'), 'dataDir: state\n');
    const state = join(dir, 'state', 'ca');
    assert.equal((await ca(dir, 'init')).code, 0, 'a root-only CA first, as the quickstart leaves it');
    const before = await ca(dir, 'issue-client', '--name', 'old', '--out', dir);
    const init = await ca(dir, 'init', '--intermediate');
    assert.equal(init.code, 0, init.stderr);
    assert.match(init.stdout, /issuing\s+CN=Portcullis Issuing CA/);
    assert.match(init.stdout, /crl: \[.*ca\.crl, .*issuing\.crl\]/);
    assert.equal(statSync(join(state, 'issuing.key')).mode & 0o777, 0o600);
    const intermediate = new X509Certificate(readFileSync(join(state, 'issuing.pem')));
    assert.ok(intermediate.ca && intermediate.checkIssued(new X509Certificate(readFileSync(join(state, 'ca.pem')))));
    assert.equal((await ca(dir, 'init', '--intermediate')).code, 0);
    assert.equal(new X509Certificate(readFileSync(join(state, 'issuing.pem'))).fingerprint256, intermediate.fingerprint256, 'a second init keeps the intermediate');

    writeFileSync(join(dir, 'pw'), 'correct horse battery\n');
    const issued = await ca(dir, 'issue-client', '--name', 'billing', '--uri', 'spiffe://example.test/billing', '--out', dir, '--p12-password-file', join(dir, 'pw'));
    assert.equal(issued.code, 0, issued.stderr);
    const serial = /serial ([0-9A-F]+)/.exec(issued.stdout)?.[1] as string;
    const leaf = new X509Certificate(readFileSync(join(dir, 'billing.pem')));
    assert.equal(leaf.issuer, intermediate.subject);
    assert.equal((readFileSync(join(dir, 'billing.chain.pem'), 'utf8').match(/BEGIN CERTIFICATE/g) ?? []).length, 3, 'leaf, intermediate, root');
    const verified = await run('openssl', ['verify', '-CAfile', join(state, 'ca.pem'), '-untrusted', join(state, 'issuing.pem'), join(dir, 'billing.pem')]);
    assert.match(verified.stdout, /billing\.pem: OK/);
    const p12 = await run('openssl', ['pkcs12', '-in', join(dir, 'billing.p12'), '-passin', `file:${join(dir, 'pw')}`, '-nodes']);
    assert.match(p12.stdout, /subject=CN = Portcullis Issuing CA/, 'the bundle carries the intermediate');

    const { p, call } = await caSite(t, dir, state, ['ca.pem', 'issuing.pem'], ['ca.crl', 'issuing.crl']);
    assert.match((await call('billing')).stdout, /spiffe:\/\/example\.test\/billing[\s\S]*200$/);
    assert.match((await call('old')).stdout, /200$/, 'certificates the root signed before the intermediate existed still work');

    assert.equal((await ca(dir, 'revoke', serial)).code, 0);
    assert.equal((await ca(dir, 'revoke', (/serial ([0-9A-F]+)/.exec(before.stdout) as RegExpExecArray)[1] as string)).code, 0);
    const inIssuing = await run('openssl', ['crl', '-in', join(state, 'issuing.crl'), '-noout', '-text']);
    const inRoot = await run('openssl', ['crl', '-in', join(state, 'ca.crl'), '-noout', '-text']);
    assert.match(inIssuing.stdout, new RegExp(`Serial Number: ${serial}`));
    assert.doesNotMatch(inRoot.stdout, new RegExp(`Serial Number: ${serial}`), 'each CRL lists only what its CA signed');
    assert.match(inRoot.stdout, /Serial Number/, 'the root-signed certificate is on the root CRL');
    await p.waitForLog((l) => l.event === 'crl_loaded' && l.revoked === 1 && String(l.source).endsWith('issuing.crl'), { timeoutMs: 40_000 });
    await p.waitForLog((l) => l.event === 'crl_loaded' && l.revoked === 1 && String(l.source).endsWith('ca.crl'), { timeoutMs: 40_000 });
    assert.match((await call('billing')).stdout, /"reason":"revoked"[\s\S]*403$/);
    assert.match((await call('old')).stdout, /"reason":"revoked"[\s\S]*403$/);

    // the CRL published over HTTP is the intermediate's: the one that lists leaves
    const published = join(dir, 'published.crl');
    await curl(['-o', published, `http://127.0.0.1:${p.proxy.httpAddress?.port}/pki/ca.crl`]);
    const served = await run('openssl', ['crl', '-inform', 'DER', '-in', published, '-noout', '-issuer']);
    assert.match(served.stdout, /Portcullis Issuing CA/);
  });

  test('refuses to put an intermediate under a root that allows none, naming the way out', async (t) => {
    const dir = tempDir(t);
    writeFileSync(join(dir, 'portcullis.yaml'), 'dataDir: state\n');
    const state = join(dir, 'state', 'ca');
    mkdirSync(state, { recursive: true });
    const made = await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(state, 'ca.key'), '-out', join(state, 'ca.pem'), '-subj', '/CN=Old root', '-days', '30', '-addext', 'basicConstraints=critical,CA:TRUE,pathlen:0', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
    assert.equal(made.code, 0, made.stderr);
    const init = await ca(dir, 'init', '--intermediate');
    assert.notEqual(init.code, 0);
    assert.match(init.stderr, /allows no intermediate under it \(path length 0\).*run ca init --intermediate for a new CA/);
    assert.ok(!existsSync(join(state, 'issuing.pem')));
  });
});

describe('internal: true certificates', () => {
  test('are issued by the built-in CA at start for every host of the site, reused on restart, and renewed after two thirds of their lifetime', async (t) => {
    const dir = tempDir(t);
    const file = join(dir, 'portcullis.yaml');
    writeFileSync(
      file,
      `dataDir: state
listen: { https: "127.0.0.1:0" }
log: { access: off }
sites:
  - hosts: [api.test, "*.svc.test"]
    certificates: [{ internal: true }]
    routes: [{ path: /, upstream: "builtin:whoami" }]
`,
    );
    const before = await runCli(['validate', file]);
    assert.equal(before.code, 2);
    assert.match(before.stderr, /sites\[0\]\.certificates\[0\]\.internal: the built-in CA has not issued .*api\.test\.pem yet; portcullis start issues it/);

    const served = async () => {
      const cli = startCli(t, ['start', '--config', file], dir);
      const port = Number((await cli.waitFor(/"https":"127\.0\.0\.1:(\d+)"/))[1]);
      const pems: string[] = [];
      for (const host of ['api.test', 'a.svc.test']) {
        const r = await run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', host, '-verify_return_error', '-verify_hostname', host, '-CAfile', join(dir, 'state', 'ca', 'ca.pem')], 'Q\n');
        assert.match(r.stdout, /Verify return code: 0 \(ok\)/, `${host} is served a certificate that verifies for it`);
        pems.push(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/.exec(r.stdout)?.[0] ?? '');
      }
      cli.child.kill('SIGTERM');
      await once(cli.child, 'exit');
      return pems[0];
    };
    const first = await served();
    assert.equal(statSync(join(dir, 'state', 'internal', 'api.test.key')).mode & 0o777, 0o600);
    assert.equal(await served(), first, 'a restart reuses the issued certificate');

    const { CaStore, ensureIssuedCertificate } = await import('../../src/pki/index.js');
    const store = await CaStore.open(join(dir, 'state'));
    const files = { certFile: join(dir, 'state', 'internal', 'api.test.pem'), keyFile: join(dir, 'state', 'internal', 'api.test.key'), hosts: ['api.test', '*.svc.test'], lifetimeDays: 90 };
    const day = 86_400_000;
    assert.equal(await ensureIssuedCertificate(store.ca, files, Date.now() + 59 * day), false, 'kept while more than a third of its lifetime is left');
    assert.equal(await ensureIssuedCertificate(store.ca, files, Date.now() + 61 * day), true, 'renewed after two thirds');
    assert.notEqual(new X509Certificate(readFileSync(files.certFile)).fingerprint256, new X509Certificate(first as string).fingerprint256, 'a new certificate is in the file');
  });
});
