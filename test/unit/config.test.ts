import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { loadConfigFile, runtimeGroups } from '../../src/config/index.js';
import { ConfigError, PortcullisError } from '../../src/errors.js';
import { runCli } from '../helpers/cli-process.js';
import { TestPki } from '../helpers/pki.js';
import { tempDir } from '../helpers/proxy.js';

const pki = new TestPki();
after(() => pki.cleanup());
const root = pki.root('config-root');
const intermediate = pki.intermediate('config-intermediate', root);
const day = 86_400_000;
const good = pki.leaf('good', intermediate, { dns: ['api.test', '*.api.test'] });
const goodRsa = pki.leaf('good-rsa', intermediate, { dns: ['api.test', '*.api.test'], key: 'rsa' });
const other = pki.leaf('other', intermediate, { dns: ['api.test'] });
const expired = pki.leaf('expired', intermediate, { dns: ['api.test'], notBefore: new Date(Date.now() - 30 * day), notAfter: new Date(Date.now() - day) });
const future = pki.leaf('future', intermediate, { dns: ['api.test'], notBefore: new Date(Date.now() + 10 * day), notAfter: new Date(Date.now() + 40 * day) });
const sha1 = pki.leaf('sha1', intermediate, { dns: ['api.test'], digest: 'sha1' });
const weak = pki.leaf('weak', intermediate, { dns: ['api.test'], key: 'rsa1024' });
const clientOnly = pki.leaf('client-only', intermediate, { dns: ['api.test'], eku: 'clientAuth' });
const foreignCrl = pki.crl(pki.root('config-foreign'), join(pki.dir, 'foreign.crl'));
const reversed = join(pki.dir, 'reversed.pem');
writeFileSync(reversed, readFileSync(intermediate.certFile, 'utf8') + good.certPem);

function site(cert = good.chainFile, key = good.keyFile, extra = ''): string {
  return `
  - hosts: [api.test]
    certificates: [{ cert: ${cert}, key: ${key} }]
    routes: [{ path: /, upstream: "http://127.0.0.1:9000" }]${extra}`;
}

function configWith(body: string): string {
  return `listen: { https: "127.0.0.1:8443" }\n${body}`;
}

/** Loads YAML from a temp file; returns the ConfigError's issues (or throws if it loads). */
function issuesOf(t: { after(fn: () => unknown): void }, yaml: string): { path: string; message: string }[] {
  const dir = tempDir(t);
  const file = join(dir, 'portcullis.yaml');
  writeFileSync(file, yaml);
  try {
    loadConfigFile(file);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    assert.equal(err.code, 'PCL_CONFIG_INVALID');
    return [...err.issues];
  }
  assert.fail('the config loaded but should not have');
}

/** A site whose certificate comes from ACME, with `hosts` and the acme settings given. */
const acmeSite = (hosts: string, acme: string) => `
  - hosts: ${hosts}
    certificates: [{ acme: { email: ops@example.test, ${acme} } }]
    routes: [{ path: /, upstream: "http://127.0.0.1:9000" }]`;

const cases: { name: string; yaml: string; path: string; message: RegExp }[] = [
  { name: 'ACME http-01 without the HTTP listener', yaml: configWith(`sites:${acmeSite('[a.test]', 'directory: "https://ca.test/dir"')}`), path: 'sites[0].certificates[0].acme.challenge', message: /http-01 is answered by the plain-HTTP listener .* add listen: \{http: "0\.0\.0\.0:80"\} or use challenge: tls-alpn-01/ },
  { name: 'ACME for a wildcard host', yaml: configWith(`sites:${acmeSite('[a.test, "*.a.test"]', 'directory: "https://ca.test/dir", challenge: tls-alpn-01')}`), path: 'sites[0].certificates[0].acme', message: /dns-01 challenge for \*\.a\.test, which Portcullis does not answer/ },
  { name: 'an ACME directory over plain HTTP', yaml: configWith(`sites:${acmeSite('[a.test]', 'directory: "http://ca.test/dir", challenge: tls-alpn-01')}`), path: 'sites[0].certificates[0].acme.directory', message: /use the https:\/\/ URL of the ACME directory/ },
  { name: 'an unknown top-level key, with a suggestion', yaml: `listne: {}\nsites:${site()}`, path: 'listne', message: /unknown key "listne"; did you mean "listen"\?/ },
  { name: 'an unknown key inside a site', yaml: configWith(`sites:${site()}\n    rotues: []`), path: 'sites[0].rotues', message: /did you mean "routes"/ },
  { name: 'a listen address without a port', yaml: `listen: { https: "8443" }\nsites:${site()}`, path: 'listen.https', message: /got "8443"; use host:port/ },
  { name: 'an upstream with an unknown scheme', yaml: configWith(`sites:${site(undefined, undefined).replace('"http://127.0.0.1:9000"', '"ftp://files.test"')}`), path: 'sites[0].routes[0].upstream', message: /got "ftp:\/\/files.test"; the scheme ftp: is not an upstream scheme; use http:\/\/ or https:\/\// },
  { name: 'a bad entry in an upstream list', yaml: configWith(`sites:${site().replace('"http://127.0.0.1:9000"', '["http://127.0.0.1:1", "nope"]')}`), path: 'sites[0].routes[0].upstream[1]', message: /got "nope"; use an http:\/\/ or https:\/\/ URL/ },
  { name: 'an upstream URL with a path', yaml: configWith(`sites:${site().replace('"http://127.0.0.1:9000"', '"http://127.0.0.1:9000/api"')}`), path: 'sites[0].routes[0].upstream', message: /origin only/ },
  { name: 'an unknown TLS profile', yaml: configWith(`tls: { profile: old }\nsites:${site()}`), path: 'tls.profile', message: /got "old"; use "intermediate" \(TLS 1.2 \+ 1.3\) or "modern"/ },
  { name: 'a duration in words', yaml: configWith(`timeouts: { idle: 10 minutes }\nsites:${site()}`), path: 'timeouts.idle', message: /got "10 minutes"; use a duration string/ },
  { name: 'a ticket rotation above 12h', yaml: configWith(`tls: { ticketKeyRotation: 24h }\nsites:${site()}`), path: 'tls.ticketKeyRotation', message: /between 1m and 12h/ },
  { name: 'the redis backend without its URL', yaml: configWith(`state: { backend: redis }\nsites:${site()}`), path: 'state.redis', message: /backend: redis needs the server's URL, e\.g\. "redis:\/\/127\.0\.0\.1:6379\/0"/ },
  { name: 'a Redis URL of another scheme', yaml: configWith(`state: { backend: redis, redis: "http://127.0.0.1:6379" }\nsites:${site()}`), path: 'state.redis', message: /use the redis:\/\/ or rediss:\/\/ \(TLS\) scheme/ },
  { name: 'a Redis database that is not a number', yaml: configWith(`state: { backend: redis, redis: "redis://127.0.0.1:6379/main" }\nsites:${site()}`), path: 'state.redis', message: /the path is the database number, e\.g\. "\/0"/ },
  { name: 'a Redis CA without TLS', yaml: configWith(`state: { backend: redis, redis: "redis://127.0.0.1:6379/0", ca: ${root.certFile} }\nsites:${site()}`), path: 'state.ca', message: /needs a rediss:\/\/ URL/ },
  { name: 'a Redis client certificate without its key', yaml: configWith(`state: { backend: redis, redis: "rediss://127.0.0.1:6379/0", cert: ${good.certFile} }\nsites:${site()}`), path: 'state.key', message: /needs both state\.cert and state\.key/ },
  { name: 'a Redis password file that does not exist', yaml: configWith(`state: { backend: redis, redis: "redis://127.0.0.1:6379/0", passwordFile: missing-password }\nsites:${site()}`), path: 'state.passwordFile', message: /cannot read .*missing-password \(ENOENT\)/ },
  { name: 'a Redis key with the memory backend', yaml: configWith(`state: { redis: "redis://127.0.0.1:6379/0" }\nsites:${site()}`), path: 'state.redis', message: /is used by backend: redis only; set state\.backend: redis, or remove it/ },
  { name: 'a cluster name with a colon', yaml: configWith(`state: { backend: redis, redis: "redis://127.0.0.1:6379/0", cluster: "a:b" }\nsites:${site()}`), path: 'state.cluster', message: /use 1 to 64 letters, digits and "\._-"/ },
  { name: 'an unknown apiKeys mode', yaml: configWith(`sites:${site().replace('upstream: "http://127.0.0.1:9000"', 'upstream: "http://127.0.0.1:9000", apiKeys: yes')}`), path: 'sites[0].routes[0].apiKeys', message: /got "yes"; use "required" \(no valid key, 401\), "optional"/ },
  { name: 'an API key header the protocol owns', yaml: configWith(`apiKeyHeader: cookie\nsites:${site()}`), path: 'apiKeyHeader', message: /set by the proxy or the protocol; use "authorization" or a header of your own/ },
  { name: 'an API key header the proxy sets', yaml: configWith(`apiKeyHeader: X-Forwarded-Key\nsites:${site()}`), path: 'apiKeyHeader', message: /set by the proxy or the protocol; use "authorization" or a header of your own/ },
  { name: 'an API key header that is a hop-by-hop field', yaml: configWith(`apiKeyHeader: proxy-authorization\nsites:${site()}`), path: 'apiKeyHeader', message: /set by the proxy or the protocol/ },
  { name: 'an API key header that carries client identities', yaml: configWith(`apiKeyHeader: x-partner\nsites:${site()}\n    clientAuth: { mode: optional, ca: [${root.certFile}], forwardHeader: X-Partner }`), path: 'apiKeyHeader', message: /"x-partner" carries the client certificate identity to upstreams \(sites\[0\]\.clientAuth\.forwardHeader\); use another header for API keys, e\.g\. "x-api-key"/ },
  { name: 'a CRL path without the plain-HTTP listener', yaml: configWith(`ca: { crlPath: /pki/ca.crl }\nsites:${site()}`), path: 'ca.crlPath', message: /served on the plain-HTTP listener.*add listen: \{http:/ },
  { name: 'a CRL path that is not a path', yaml: configWith(`ca: { crlPath: "pki/ca.crl?x=1" }\nsites:${site()}`), path: 'ca.crlPath', message: /starting with "\/"/ },
  { name: 'a CRL file that does not exist', yaml: configWith(`sites:${site()}\n    clientAuth: { mode: require, ca: [${root.certFile}], crl: [missing.crl] }`), path: 'sites[0].clientAuth.crl[0]', message: /cannot read .*missing\.crl \(ENOENT\); give the CRL file/ },
  { name: 'a CRL file that is not a CRL', yaml: configWith(`sites:${site()}\n    clientAuth: { mode: require, ca: [${root.certFile}], crl: [${root.certFile}] }`), path: 'sites[0].clientAuth.crl[0]', message: /holds no "BEGIN X509 CRL" block/ },
  { name: 'a CRL of a CA not in clientAuth.ca', yaml: configWith(`sites:${site()}\n    clientAuth: { mode: require, ca: [${root.certFile}], crl: [${foreignCrl}] }`), path: 'sites[0].clientAuth.crl[0]', message: /issued by .*config-foreign.*not in clientAuth\.ca; list the CA that signs it/ },
  { name: 'a CRL URL of another scheme', yaml: configWith(`sites:${site()}\n    clientAuth: { mode: require, ca: [${root.certFile}], crl: ["ldap://ldap.example.test/cn=crl"] }`), path: 'sites[0].clientAuth.crl[0]', message: /not an http\(s\) URL; CRLs are fetched over http or https only/ },
  { name: 'refuseAt: handshake with mode: optional', yaml: configWith(`sites:${site()}\n    clientAuth: { mode: optional, refuseAt: handshake, ca: [${root.certFile}] }`), path: 'sites[0].clientAuth.refuseAt', message: /refusing in the handshake needs mode: require/ },
  { name: 'an OCSP responder without ocsp', yaml: configWith(`sites:${site()}\n    clientAuth: { mode: require, ca: [${root.certFile}], ocspResponder: "http://ocsp.test" }`), path: 'sites[0].clientAuth.ocspResponder', message: /used only with ocsp: true/ },
  { name: 'an unknown revocation policy', yaml: configWith(`sites:${site()}\n    clientAuth: { mode: require, ca: [${root.certFile}], ocsp: true, onRevocationUnavailable: ignore }`), path: 'sites[0].clientAuth.onRevocationUnavailable', message: /use "reject" .* or "allow"/ },
  { name: 'clientAuth without a mode', yaml: configWith(`sites:${site()}\n    clientAuth: { ca: [${root.certFile}] }`), path: 'sites[0].clientAuth.mode', message: /missing; use "require"/ },
  { name: 'a client CA file that is a leaf', yaml: configWith(`sites:${site()}\n    clientAuth: { mode: require, ca: [${good.certFile}] }`), path: 'sites[0].clientAuth.ca[0]', message: /is not a CA certificate/ },
  { name: 'a client CA intermediate without its root', yaml: configWith(`sites:${site()}\n    clientAuth: { mode: require, ca: [${intermediate.certFile}] }`), path: 'sites[0].clientAuth.ca', message: /is not listed; list the root CA too/ },
  { name: 'clientCert on a site without clientAuth', yaml: configWith(`sites:${site().replace('upstream: "http://127.0.0.1:9000" }', 'upstream: "http://127.0.0.1:9000", clientCert: required }')}`), path: 'sites[0].routes[0].clientCert', message: /need clientAuth on the site/ },
  { name: 'an allow-list on an optional route', yaml: configWith(`sites:${site().replace('upstream: "http://127.0.0.1:9000" }', 'upstream: "http://127.0.0.1:9000", clientCert: optional, allow: { dns: [a.test] } }')}\n    clientAuth: { mode: optional, ca: [${root.certFile}] }`), path: 'sites[0].routes[0].allow', message: /needs clientCert: required/ },
  { name: 'an empty allow-list', yaml: configWith(`sites:${site().replace('upstream: "http://127.0.0.1:9000" }', 'upstream: "http://127.0.0.1:9000", allow: {} }')}\n    clientAuth: { mode: require, ca: [${root.certFile}] }`), path: 'sites[0].routes[0].allow', message: /admits nobody/ },
  { name: 'a URI prefix not on a segment boundary', yaml: configWith(`sites:${site().replace('upstream: "http://127.0.0.1:9000" }', 'upstream: "http://127.0.0.1:9000", allow: { uri: ["spiffe://example.test/billing*"] } }')}\n    clientAuth: { mode: require, ca: [${root.certFile}] }`), path: 'sites[0].routes[0].allow.uri[0]', message: /right after "\/"/ },
  { name: 'a URI pattern with an inner wildcard', yaml: configWith(`sites:${site().replace('upstream: "http://127.0.0.1:9000" }', 'upstream: "http://127.0.0.1:9000", allow: { uri: ["spiffe://*/billing"] } }')}\n    clientAuth: { mode: require, ca: [${root.certFile}] }`), path: 'sites[0].routes[0].allow.uri[0]', message: /"\*" may only end it/ },
  { name: 'a URI pattern with an encoded dot segment', yaml: configWith(`sites:${site().replace('upstream: "http://127.0.0.1:9000" }', 'upstream: "http://127.0.0.1:9000", allow: { uri: ["spiffe://example.test/billing/%2e%2e/admin"] } }')}\n    clientAuth: { mode: require, ca: [${root.certFile}] }`), path: 'sites[0].routes[0].allow.uri[0]', message: /%2E, %2F or %5C .* matches no client certificate/ },
  { name: 'a malformed fingerprint', yaml: configWith(`sites:${site().replace('upstream: "http://127.0.0.1:9000" }', 'upstream: "http://127.0.0.1:9000", allow: { fingerprints: ["md5:00"] } }')}\n    clientAuth: { mode: require, ca: [${root.certFile}] }`), path: 'sites[0].routes[0].allow.fingerprints[0]', message: /64 hex digits/ },
  { name: 'a reserved identity header', yaml: configWith(`sites:${site()}\n    clientAuth: { mode: require, ca: [${root.certFile}], forwardHeader: X-Forwarded-User }`), path: 'sites[0].clientAuth.forwardHeader', message: /set by the proxy/ },
  { name: 'zero workers', yaml: configWith(`workers: 0\nsites:${site()}`), path: 'workers', message: /got 0; use at least 1 worker/ },
  { name: 'a word for workers', yaml: configWith(`workers: many\nsites:${site()}`), path: 'workers', message: /got "many"; use a number of worker processes, or "auto"/ },
  { name: 'a wildcard over a top-level domain', yaml: configWith(`sites:${site().replace('[api.test]', '["*.test"]')}`), path: 'sites[0].hosts[0]', message: /wildcard over one whole label/ },
  { name: 'a missing certificate file', yaml: configWith(`sites:${site('/nonexistent/cert.pem')}`), path: 'sites[0].certificates[0].cert', message: /\/nonexistent\/cert.pem does not exist; check the path/ },
  { name: 'a key that does not match the certificate', yaml: configWith(`sites:${site(good.chainFile, goodRsa.keyFile)}`), path: 'sites[0].certificates[0].key', message: /key does not match certificate .*good.chain.pem \(certificate is ECDSA P-256, key is RSA 2048\); point key: at the matching private key/ },
  { name: 'a chain in the wrong order', yaml: configWith(`sites:${site(reversed)}`), path: 'sites[0].certificates[0].cert', message: /is not in chain order: certificate #2 \(CN=good.*\) did not issue #1 \(CN=config-intermediate.*order the file leaf first/ },
  { name: 'an expired certificate', yaml: configWith(`sites:${site(expired.chainFile, expired.keyFile)}`), path: 'sites[0].certificates[0].cert', message: /expired on .*; renew it/ },
  { name: 'a certificate not valid yet', yaml: configWith(`sites:${site(future.chainFile, future.keyFile)}`), path: 'sites[0].certificates[0].cert', message: /is not valid before/ },
  { name: 'a certificate signed with SHA-1', yaml: configWith(`sites:${site(sha1.chainFile, sha1.keyFile)}`), path: 'sites[0].certificates[0].cert', message: /signed with SHA-1, which clients reject; reissue it with SHA-256/ },
  { name: 'an RSA key under 2048 bits', yaml: configWith(`sites:${site(weak.chainFile, weak.keyFile)}`), path: 'sites[0].certificates[0].key', message: /RSA key of 1024 bits is too weak/ },
  { name: 'a client-only certificate on a site', yaml: configWith(`sites:${site(clientOnly.chainFile, clientOnly.keyFile)}`), path: 'sites[0].certificates[0].cert', message: /lacks the serverAuth extended key usage/ },
  { name: 'a host no certificate covers', yaml: configWith(`sites:${site().replace('[api.test]', '[api.test, www.test]')}`), path: 'sites[0].hosts[1]', message: /no certificate of this site covers "www.test"/ },
  { name: 'a host served by two sites', yaml: configWith(`sites:${site()}${site(other.chainFile, other.keyFile)}`), path: 'sites[1].hosts[0]', message: /already served by sites\[0\]/ },
  { name: 'two default sites', yaml: configWith(`sites:${site()}\n    default: true${site(good.chainFile, good.keyFile).replace('[api.test]', '[x.api.test]')}\n    default: true`), path: 'sites[1].default', message: /already the default site/ },
  { name: 'two ECDSA certificates on one site', yaml: configWith(`sites:\n  - hosts: [api.test]\n    certificates: [{ cert: ${good.chainFile}, key: ${good.keyFile} }, { cert: ${other.chainFile}, key: ${other.keyFile} }]\n    routes: [{ path: /, upstream: "builtin:whoami" }]`), path: 'sites[0].certificates[1]', message: /at most one ECDSA and one RSA/ },
  { name: 'upstreamTls on a plain HTTP upstream', yaml: configWith(`sites:${site()}`.replace('upstream: "http://127.0.0.1:9000" }', 'upstream: "http://127.0.0.1:9000", upstreamTls: { serverName: a.test } }')), path: 'sites[0].routes[0].upstreamTls', message: /applies to https:\/\/ upstreams only/ },
  { name: 'a route path without a leading slash', yaml: configWith(`sites:${site().replace('path: /', 'path: api')}`), path: 'sites[0].routes[0].path', message: /got "api"; use a path prefix starting with "\/"/ },
  { name: 'a route path not in normal form', yaml: configWith(`sites:${site().replace('path: /', 'path: "/a//b/../c/"')}`), path: 'sites[0].routes[0].path', message: /got "\/a\/\/b\/..\/c\/"; requests are matched in normal form; write it as "\/a\/c\/"/ },
  { name: 'a route path that requests can never have', yaml: configWith(`sites:${site().replace('path: /', 'path: "/a%2Fb/"')}`), path: 'sites[0].routes[0].path', message: /encoded slash/ },
  { name: 'post-quantum required with TLS 1.2 allowed', yaml: configWith(`tls: { postQuantum: required }\nsites:${site()}`), path: 'tls.postQuantum', message: /required needs tls.profile: modern: TLS 1.2 has no post-quantum groups/ },
  ...(runtimeGroups.postQuantum
    ? []
    : [{ name: 'post-quantum required on a runtime without ML-KEM', yaml: configWith(`tls: { profile: modern, postQuantum: required }\nsites:${site()}`), path: 'tls.postQuantum', message: /required needs a runtime with ML-KEM, and Node v\d+\.\d+\.\d+ bundles OpenSSL 3\.0\.\d+; run Portcullis on Node 24 LTS/ }]),
  { name: 'a missing listen block', yaml: `sites:${site()}`, path: 'listen', message: /missing; add listen: \{https: "127.0.0.1:8443"\}/ },
];

describe('config errors name the key, the value and the fix', () => {
  for (const c of cases) {
    test(`reports ${c.name}`, (t) => {
      const issues = issuesOf(t, c.yaml);
      const hit = issues.find((i) => i.path === c.path);
      assert.ok(hit, `no issue at ${c.path}; got ${JSON.stringify(issues)}`);
      assert.match(hit.message, c.message);
    });
  }

  test('reports every problem of a file at once, not only the first', (t) => {
    const issues = issuesOf(t, `listen: { https: nope }\ntls: { profile: old }\nsites:${site('/nonexistent.pem')}`);
    assert.deepEqual(issues.map((i) => i.path).sort(), ['listen.https', 'tls.profile']);
  });

  test('reports a YAML syntax error with its line', (t) => {
    const file = join(tempDir(t), 'bad.yaml');
    writeFileSync(file, 'listen:\n  https: "127.0.0.1:1"\n sites: [\n');
    assert.throws(
      () => loadConfigFile(file),
      (err: unknown) => err instanceof PortcullisError && err.code === 'PCL_CONFIG_YAML' && /line \d+, column \d+/.test(err.message),
    );
  });

  test('reports a missing config file with its path', () => {
    assert.throws(
      () => loadConfigFile('/nonexistent/portcullis.yaml'),
      (err: unknown) => err instanceof PortcullisError && err.code === 'PCL_CONFIG_NOT_FOUND' && err.message.includes('/nonexistent/portcullis.yaml'),
    );
  });
});

describe('a valid config', () => {
  test('loads with defaults applied, relative paths resolved, routes longest first, and is frozen', (t) => {
    const dir = tempDir(t);
    const file = join(dir, 'portcullis.yaml');
    writeFileSync(join(dir, 'cert.pem'), readFileSync(good.chainFile));
    writeFileSync(join(dir, 'key.pem'), readFileSync(good.keyFile));
    writeFileSync(
      file,
      `listen: { https: "127.0.0.1:8443" }
sites:
  - hosts: [API.test, "*.api.test"]
    certificates: [{ cert: cert.pem, key: key.pem }, { cert: ${goodRsa.chainFile}, key: ${goodRsa.keyFile} }]
    routes:
      - { path: /, upstream: "http://127.0.0.1:9000" }
      - { path: /payments/, upstream: ["https://127.0.0.1:9001", "https://127.0.0.1:9002"] }
`,
    );
    const config = loadConfigFile(file);
    assert.equal(config.tls.profile.name, 'intermediate');
    assert.equal(config.tls.ticketKeyRotationMs, 12 * 3_600_000);
    assert.equal(config.timeouts.upstreamConnectMs, 10_000);
    assert.equal(config.limits.maxHeaderBytes, 16_384);
    assert.equal(config.dataDir, join(dir, '.portcullis'));
    const s = config.sites[0]!;
    assert.deepEqual(s.hosts, ['api.test', '*.api.test']);
    assert.equal(s.certificates[0]!.certFile, join(dir, 'cert.pem'));
    assert.deepEqual(s.certificates.map((c) => c.keyDescription), ['ECDSA P-256', 'RSA 2048']);
    assert.equal(s.hsts, 'max-age=31536000; includeSubDomains');
    assert.deepEqual(s.routes.map((r) => r.path), ['/payments/', '/']);
    assert.equal(s.routes[0]!.upstreams.length, 2);
    assert.equal(config.hosts.lookup('x.api.test'), s);
    assert.equal(config.hosts.lookup('a.b.api.test'), undefined);
    assert.ok(Object.isFrozen(config) && Object.isFrozen(s) && Object.isFrozen(s.routes));
    assert.throws(() => {
      (config as { workers: number }).workers = 4;
    }, TypeError);
  });
});

describe('the CLI', () => {
  test('validate exits 2 and prints each problem with its key', async (t) => {
    const file = join(tempDir(t), 'portcullis.yaml');
    writeFileSync(file, configWith(`sites:${site('/nonexistent/cert.pem')}`));
    const r = await runCli(['validate', file]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /sites\[0\]\.certificates\[0\]\.cert: file \/nonexistent\/cert.pem does not exist/);
  });

  test('validate refuses a YAML alias error with PCL_CONFIG_YAML and exit code 2, on one line without a stack', async (t) => {
    const dir = tempDir(t);
    for (const [name, yaml, message] of [
      ['unresolved', `listen: { https: "127.0.0.1:8443" }\nsites: *sites\n`, /alias \*sites at line 2, column 8 has no anchor &sites before it/],
      ['too-many', `a: &a [x, x]\nb: [${'*a, '.repeat(60)}*a]\n`, /aliases expand to more than 50 copies/],
    ] as const) {
      const file = join(dir, `${name}.yaml`);
      writeFileSync(file, yaml);
      const r = await runCli(['validate', file]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /^portcullis: PCL_CONFIG_YAML: /);
      assert.match(r.stderr, message);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.doesNotMatch(r.stderr, /\n\s+at |ReferenceError|unexpected error/);
    }
  });

  test('validate exits 0 and summarises a valid config', async (t) => {
    const file = join(tempDir(t), 'portcullis.yaml');
    writeFileSync(file, configWith(`sites:${site()}`));
    const r = await runCli(['validate', file]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /is valid: 1 site\(s\), 1 route\(s\), 1 certificate\(s\), TLS profile intermediate/);
  });

  test('schema prints a JSON Schema that rejects unknown keys', async () => {
    const r = await runCli(['schema']);
    assert.equal(r.code, 0, r.stderr);
    const schema = JSON.parse(r.stdout) as { properties: Record<string, unknown>; additionalProperties: boolean; required: string[] };
    assert.equal(schema.additionalProperties, false);
    assert.ok('sites' in schema.properties && 'listen' in schema.properties);
    assert.deepEqual(schema.required.sort(), ['listen', 'sites']);
  });
});
