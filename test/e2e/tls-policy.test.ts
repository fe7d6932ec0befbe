import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { curl, resolveTo, run, sClient, sClientRequest } from '../helpers/clients.js';
import { TestPki, type Ca } from '../helpers/pki.js';
import { startProxy, suiteScope, tempDir, type RunningProxy } from '../helpers/proxy.js';

const pki = new TestPki();
after(() => pki.cleanup());
let root: Ca;

function siteYaml(profile: 'intermediate' | 'modern' = 'intermediate', withDefault = false): string {
  const api = { ec: pki.leaf(`api-ec-${profile}-${withDefault}`, root, { dns: ['api.test'] }), rsa: pki.leaf(`api-rsa-${profile}-${withDefault}`, root, { dns: ['api.test'], key: 'rsa' }) };
  const other = pki.leaf(`other-${profile}-${withDefault}`, root, { dns: ['*.other.test'] });
  return `
tls: { profile: ${profile} }
listen: { https: "127.0.0.1:0" }
sites:
  - hosts: [api.test]
    certificates:
      - { cert: ${api.ec.chainFile}, key: ${api.ec.keyFile} }
      - { cert: ${api.rsa.chainFile}, key: ${api.rsa.keyFile} }
    routes: [{ path: /, upstream: "builtin:whoami" }]
  - hosts: ["*.other.test"]
    default: ${withDefault}
    certificates: [{ cert: ${other.chainFile}, key: ${other.keyFile} }]
    routes: [{ path: /, upstream: "builtin:whoami" }]
`;
}

describe('TLS policy of the intermediate profile', () => {
  let p: RunningProxy;
  const verify = () => ['-CAfile', root.certFile, '-verify_return_error'];
  const scope = suiteScope();
  before(async () => {
    root ??= pki.root('tls-policy-root');
    p = await startProxy(scope, siteYaml());
  });

  for (const [name, args] of [
    ['TLS 1.0', ['-tls1']],
    ['TLS 1.1', ['-tls1_1']],
  ] as const) {
    test(`refuses ${name} with a protocol_version alert`, async () => {
      // SECLEVEL=0 so that the client really offers the old version
      const r = await sClient(p.port, [...args, '-cipher', 'DEFAULT:@SECLEVEL=0', '-servername', 'api.test']);
      assert.equal(r.protocol, null);
      assert.match(r.stderr, /alert protocol version/);
    });
  }

  for (const cipher of ['ECDHE-ECDSA-AES128-SHA', 'ECDHE-RSA-AES256-SHA384', 'ECDHE-ECDSA-AES256-SHA', 'AES128-GCM-SHA256', 'AES256-SHA256', 'DHE-RSA-AES128-GCM-SHA256']) {
    test(`refuses TLS 1.2 with the CBC, RSA-key-exchange or DHE suite ${cipher}`, async () => {
      const r = await sClient(p.port, ['-tls1_2', '-cipher', cipher, '-servername', 'api.test']);
      assert.equal(r.protocol, null);
      assert.match(r.stderr, /alert handshake failure/);
    });
  }

  for (const cipher of [
    'ECDHE-ECDSA-AES128-GCM-SHA256',
    'ECDHE-ECDSA-AES256-GCM-SHA384',
    'ECDHE-ECDSA-CHACHA20-POLY1305',
    'ECDHE-RSA-AES128-GCM-SHA256',
    'ECDHE-RSA-AES256-GCM-SHA384',
    'ECDHE-RSA-CHACHA20-POLY1305',
  ]) {
    test(`accepts TLS 1.2 with the AEAD suite ${cipher} and a verified certificate`, async () => {
      const r = await sClient(p.port, ['-tls1_2', '-cipher', cipher, '-servername', 'api.test', ...verify()]);
      assert.equal(r.protocol, 'TLSv1.2');
      assert.equal(r.cipher, cipher);
    });
  }

  for (const suite of ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256']) {
    test(`accepts TLS 1.3 with ${suite}`, async () => {
      const r = await sClient(p.port, ['-tls1_3', '-ciphersuites', suite, '-servername', 'api.test', ...verify()]);
      assert.equal(r.protocol, 'TLSv1.3');
      assert.equal(r.cipher, suite);
    });
  }

  test('refuses TLS 1.3 with a suite outside the profile (AES-128-CCM)', async () => {
    const r = await sClient(p.port, ['-tls1_3', '-ciphersuites', 'TLS_AES_128_CCM_SHA256', '-servername', 'api.test']);
    assert.equal(r.protocol, null);
  });

  test('picks the cipher in server preference order, not the client order', async () => {
    const r = await sClient(p.port, ['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256', '-servername', 'api.test', ...verify()]);
    assert.equal(r.cipher, 'ECDHE-ECDSA-AES128-GCM-SHA256');
  });

  for (const [group, shown] of [
    ['X25519', 'X25519'],
    ['P-256', 'ECDH, prime256v1'],
    ['P-384', 'ECDH, secp384r1'],
  ] as const) {
    test(`negotiates the key-exchange group ${group}`, async () => {
      const r = await sClient(p.port, ['-groups', group, '-servername', 'api.test', ...verify()]);
      assert.equal(r.protocol, 'TLSv1.3');
      assert.ok(r.tempKey?.startsWith(`${shown},`), `${r.tempKey}`);
    });
  }

  test('refuses a client that offers only a group outside the profile (P-521)', async () => {
    const r = await sClient(p.port, ['-groups', 'P-521', '-servername', 'api.test']);
    assert.equal(r.protocol, null);
  });

  test('curl connects over TLS 1.2 and over TLS 1.3, verifying the server', async () => {
    for (const [flags, version] of [
      [['--tlsv1.2', '--tls-max', '1.2'], 'TLSv1.2'],
      [['--tlsv1.3'], 'TLSv1.3'],
    ] as const) {
      const r = await curl([...flags, '--cacert', root.certFile, ...resolveTo('api.test', p.port), `https://api.test:${p.port}/`]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal((JSON.parse(r.stdout) as { tls: { version: string } }).tls.version, version);
    }
  });

  test('gnutls-cli, a second TLS stack, negotiates TLS 1.3 and is refused TLS 1.1', async () => {
    const base = ['--x509cafile', root.certFile, '--sni-hostname', 'api.test', '--verify-hostname', 'api.test', '-p', String(p.port), '127.0.0.1'];
    const ok = await run('gnutls-cli', ['--priority', 'NORMAL', ...base], '');
    assert.match(ok.stdout, /Description: \(TLS1\.3-X\.509\)/);
    assert.match(ok.stdout, /Handshake was completed/);
    const old = await run('gnutls-cli', ['--priority', 'NORMAL:-VERS-ALL:+VERS-TLS1.1', ...base], '');
    assert.notEqual(old.code, 0);
    assert.doesNotMatch(old.stdout, /Handshake was completed/);
  });

  test('serves the certificate of the site the SNI names, wildcards included', async () => {
    const api = await sClient(p.port, ['-servername', 'api.test', ...verify()]);
    assert.equal(api.peerSubject, 'CN = api-ec-intermediate-false');
    const other = await sClient(p.port, ['-servername', 'x.other.test', ...verify(), '-verify_hostname', 'x.other.test']);
    assert.equal(other.peerSubject, 'CN = other-intermediate-false');
  });

  test('refuses an unknown SNI and a handshake without SNI when no site is default, and logs why', async () => {
    const unknown = await sClient(p.port, ['-servername', 'nobody.test']);
    assert.equal(unknown.protocol, null);
    const deeper = await sClient(p.port, ['-servername', 'a.b.other.test']);
    assert.equal(deeper.protocol, null, 'a wildcard covers exactly one label');
    const none = await sClient(p.port, ['-noservername']);
    assert.equal(none.protocol, null);
    const refused = p.logs.filter((l) => l.event === 'handshake_failed' && l.reason === 'unknown_sni');
    assert.ok(refused.length >= 2, JSON.stringify(p.logs));
    assert.ok(refused.every((l) => /^t13d\d{4}00_[0-9a-f]{12}_[0-9a-f]{12}$/.test(String(l.ja4))), 'each refusal carries the JA4 of its ClientHello (openssl: SNI, no ALPN)');
  });

  test('serves the RSA certificate to a client that accepts only RSA and the ECDSA one otherwise', async () => {
    const rsa13 = await sClient(p.port, ['-tls1_3', '-sigalgs', 'rsa_pss_rsae_sha256', '-servername', 'api.test', ...verify()]);
    assert.equal(rsa13.peerSubject, 'CN = api-rsa-intermediate-false');
    assert.equal(rsa13.signatureType, 'RSA-PSS');
    const ec13 = await sClient(p.port, ['-tls1_3', '-sigalgs', 'ecdsa_secp256r1_sha256', '-servername', 'api.test', ...verify()]);
    assert.equal(ec13.peerSubject, 'CN = api-ec-intermediate-false');
    const rsa12 = await sClient(p.port, ['-tls1_2', '-cipher', 'ECDHE-RSA-AES128-GCM-SHA256', '-servername', 'api.test', ...verify()]);
    assert.equal(rsa12.peerSubject, 'CN = api-rsa-intermediate-false');
  });

  test('refuses a client that offers only SHA-1 signature algorithms', async () => {
    const r = await sClient(p.port, ['-tls1_2', '-sigalgs', 'RSA+SHA1:ECDSA+SHA1', '-cipher', 'DEFAULT:@SECLEVEL=0', '-servername', 'api.test']);
    assert.equal(r.protocol, null);
  });

  for (const version of ['-tls1_2', '-tls1_3']) {
    test(`resumes a ${version === '-tls1_2' ? 'TLS 1.2' : 'TLS 1.3'} session from a session ticket`, async (t) => {
      const sess = join(tempDir(t), 'session.pem');
      const first = await sClientRequest(p.port, 'api.test', [version, ...verify(), '-sess_out', sess]);
      assert.equal(first.status, '200');
      assert.equal(first.reused, false);
      const second = await sClientRequest(p.port, 'api.test', [version, ...verify(), '-sess_in', sess]);
      assert.equal(second.status, '200');
      assert.equal(second.reused, true);
      assert.match(second.stdout, /"resumed": true/);
    });
  }
});

describe('session tickets', () => {
  test('a TLS 1.3 resumption gets a fresh ticket, with which the client resumes again: one ticket is never reused (RFC 8446 §C.4)', async (t) => {
    root ??= pki.root('tls-policy-root');
    const p = await startProxy(t, siteYaml());
    const dir = tempDir(t);
    const tickets = (stdout: string) => (stdout.match(/Post-Handshake New Session Ticket arrived/g) ?? []).length;
    const first = await sClientRequest(p.port, 'api.test', ['-tls1_3', '-CAfile', root.certFile, '-sess_out', join(dir, '1.pem')]);
    assert.equal(first.reused, false);
    const second = await sClientRequest(p.port, 'api.test', ['-tls1_3', '-CAfile', root.certFile, '-sess_in', join(dir, '1.pem'), '-sess_out', join(dir, '2.pem')]);
    assert.equal(second.reused, true);
    assert.ok(tickets(second.stdout) >= 1, 'no ticket after the resumption');
    const third = await sClientRequest(p.port, 'api.test', ['-tls1_3', '-CAfile', root.certFile, '-sess_in', join(dir, '2.pem')]);
    assert.equal(third.reused, true, 'the fresh ticket resumes');
    assert.notEqual(readFileSync(join(dir, '1.pem'), 'utf8'), readFileSync(join(dir, '2.pem'), 'utf8'));
  });
});

describe('sessions and sites', () => {
  test('a session made with one site does not resume on another', async (t) => {
    root ??= pki.root('tls-policy-root');
    const p = await startProxy(t, siteYaml());
    const sess = join(tempDir(t), 'session.pem');
    for (const version of ['-tls1_2', '-tls1_3']) {
      const first = await sClientRequest(p.port, 'api.test', [version, '-CAfile', root.certFile, '-sess_out', sess]);
      assert.equal(first.status, '200');
      const same = await sClientRequest(p.port, 'api.test', [version, '-CAfile', root.certFile, '-sess_in', sess]);
      assert.equal(same.reused, true, `${version}: resumes on its own site`);
      const other = await sClientRequest(p.port, 'x.other.test', [version, '-CAfile', root.certFile, '-sess_in', sess]);
      assert.equal(other.reused, false, `${version}: does not resume on another site`);
      assert.equal(other.status, '200');
    }
  });

  test('a client without SNI reaches the non-default site that lists the IP address it connected to', async (t) => {
    root ??= pki.root('tls-policy-root');
    const ip = pki.leaf('by-ip', root, { ips: ['127.0.0.1'] });
    const p = await startProxy(
      t,
      siteYaml() +
        `  - hosts: [127.0.0.1]
    certificates: [{ cert: ${ip.chainFile}, key: ${ip.keyFile} }]
    routes: [{ path: /, upstream: "builtin:whoami" }]
`,
    );
    const r = await curl(['--cacert', root.certFile, `https://127.0.0.1:${p.port}/`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { site: string }).site, '127.0.0.1');
  });
});

describe('TLS policy of the modern profile', () => {
  test('refuses TLS 1.2 and accepts TLS 1.3', async (t) => {
    root ??= pki.root('tls-policy-root');
    const p = await startProxy(t, siteYaml('modern'));
    const old = await sClient(p.port, ['-tls1_2', '-servername', 'api.test']);
    assert.equal(old.protocol, null);
    assert.match(old.stderr, /alert protocol version/);
    const ok = await sClient(p.port, ['-servername', 'api.test', '-CAfile', root.certFile, '-verify_return_error']);
    assert.equal(ok.protocol, 'TLSv1.3');
  });
});

describe('default site', () => {
  test('serves clients without SNI or with an unknown SNI when a site is marked default', async (t) => {
    root ??= pki.root('tls-policy-root');
    const p = await startProxy(t, siteYaml('intermediate', true));
    const none = await sClient(p.port, ['-noservername', '-CAfile', root.certFile]);
    assert.equal(none.peerSubject, 'CN = other-intermediate-true');
    const unknown = await sClient(p.port, ['-servername', 'nobody.test', '-CAfile', root.certFile]);
    assert.equal(unknown.peerSubject, 'CN = other-intermediate-true');
  });
});
