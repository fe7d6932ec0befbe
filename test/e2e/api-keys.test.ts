import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { runCli, startCli, type CliProcess } from '../helpers/cli-process.js';
import { curl, resolveTo } from '../helpers/clients.js';
import { TestPki, type Ca, type Leaf } from '../helpers/pki.js';
import { suiteScope, tempDir } from '../helpers/proxy.js';
import { startUpstream, type EchoAnswer } from '../helpers/upstream.js';
import { untilPast } from '../helpers/wait.js';

const pki = new TestPki();
after(() => pki.cleanup());

describe('API keys', () => {
  const scope = suiteScope();
  let root: Ca;
  let certA: Leaf;
  let certB: Leaf;
  let dir: string;
  let file: string;
  let port: number;
  let cli: CliProcess;

  const keys = async (...args: string[]) => {
    const r = await runCli(['keys', ...args, '--config', file]);
    assert.equal(r.code, 0, r.stderr);
    return r;
  };
  const create = async (...args: string[]) => {
    const r = await keys('create', ...args);
    const key = r.stdout.trim();
    assert.match(key, /^pck_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/, 'stdout is the key alone');
    /** The expiry the CLI reports on stderr ("never", or an ISO time). */
    const expires = /, expires (\S+)\. It is shown once/.exec(r.stderr)?.[1] ?? null;
    return { key, id: key.slice(4, 16), expires };
  };
  /** One request; the status, the reason of a refusal, and what the upstream received. */
  const call = async (path: string, key: string | null, cert: Leaf | null = null) => {
    const r = await curl([
      ...resolveTo('api.test', port),
      '--cacert', root.certFile,
      ...(cert ? ['--cert', cert.certFile, '--key', cert.keyFile] : []),
      ...(key ? ['-H', `Authorization: Bearer ${key}`] : []),
      '-D', '-',
      `https://api.test:${port}${path}`,
    ]);
    const [head = '', body = ''] = r.stdout.split(/\r\n\r\n/);
    const status = Number(/^HTTP\/[\d.]+ (\d{3})/.exec(head)?.[1]);
    const json = body ? (JSON.parse(body) as Partial<EchoAnswer> & { reason?: string }) : {};
    return { status, head, reason: json.reason ?? null, upstreamHeaders: json.headers ?? null };
  };

  before(async () => {
    root = pki.root('keys-root');
    const server = pki.leaf('keys-server', root, { dns: ['api.test'] });
    certA = pki.leaf('keys-client-a', root, { eku: 'clientAuth', subject: '/CN=partner-a', uris: ['spiffe://example.test/partner-a'] });
    certB = pki.leaf('keys-client-b', root, { eku: 'clientAuth', subject: '/CN=partner-b' });
    const upstream = await startUpstream(scope);
    dir = tempDir(scope);
    file = `${dir}/portcullis.yaml`;
    writeFileSync(
      file,
      `listen: { https: "127.0.0.1:0" }
sites:
  - hosts: [api.test]
    certificates: [{ cert: ${server.chainFile}, key: ${server.keyFile} }]
    clientAuth: { mode: optional, ca: [${root.certFile}] }
    routes:
      - { path: /v1/, upstream: "${upstream.origin}", clientCert: optional, apiKeys: required }
      - { path: /other/, upstream: "${upstream.origin}", clientCert: optional, apiKeys: required }
      - { path: /open/, upstream: "${upstream.origin}", clientCert: optional, apiKeys: optional }
      - { path: /plain/, upstream: "${upstream.origin}", clientCert: optional }
`,
    );
    cli = startCli(scope, ['start', '--config', file], dir);
    port = Number((await cli.waitFor(/"https":"127\.0\.0\.1:(\d+)"/))[1]);
  });

  test('a created key is shown once, stored only as its hash (0600), works on its routes and never reaches the upstream', async () => {
    const { key, id } = await create('--name', 'partner', '--routes', '/v1/');
    const store = readFileSync(`${dir}/.portcullis/api-keys.json`, 'utf8');
    assert.equal(statSync(`${dir}/.portcullis/api-keys.json`).mode & 0o777, 0o600);
    assert.ok(!store.includes(key.slice(17)), 'the secret is not in the store');
    const record = (JSON.parse(store) as { keys: { id: string; hash: string; name: string; expiresAt: string }[] }).keys.find((k) => k.id === id);
    assert.equal(record?.hash, createHash('sha256').update(key).digest('hex'));
    assert.ok(Date.parse(record?.expiresAt ?? '') > Date.now() + 89 * 86_400_000, 'keys expire in 90 days unless told otherwise');

    const ok = await call('/v1/x', key);
    assert.equal(ok.status, 200);
    assert.equal(ok.upstreamHeaders?.authorization, undefined, 'the key header is not forwarded');
    assert.equal((await call('/other/x', key)).reason, 'key_not_allowed_for_route');
    const missing = await call('/v1/x', null);
    assert.equal(missing.status, 401);
    assert.equal(missing.reason, 'missing_api_key');
    assert.match(missing.head, /^www-authenticate: Bearer\r?$/im);
    const forged = await call('/v1/x', `${key.slice(0, -1)}${key.endsWith('A') ? 'B' : 'A'}`);
    assert.equal(forged.reason, 'unknown_api_key');
    assert.match(forged.head, /^www-authenticate: Bearer error="invalid_token"/im);
    assert.equal((await call('/v1/x', 'not-a-key')).reason, 'unknown_api_key');
    assert.equal((await call('/open/x', null)).status, 200, 'optional: no key is fine');
    assert.equal((await call('/open/x', 'pck_000000000000_nope')).reason, 'unknown_api_key', 'optional: a presented key must be valid');
    const plain = await call('/plain/x', key);
    assert.equal(plain.status, 200);
    assert.equal(plain.upstreamHeaders?.authorization, undefined, 'one of our keys is dropped even on a route that does not take keys');

    await cli.waitFor(new RegExp(`"apiKeyId":"${id}"`));
    assert.ok(!cli.stdout.includes(key.slice(17)), 'the access log names the key id, never the secret');
  });

  test('a key bound to certificate A is refused with certificate B and without a certificate, accepted with A', async () => {
    const fingerprint = `sha256:${createHash('sha256').update(Buffer.from(readFileSync(certA.certFile, 'utf8').replace(/-----[^-]+-----|\s/g, ''), 'base64')).digest('hex')}`;
    const bound = await create('--name', 'bound-a', '--bind-cert', fingerprint);
    assert.equal((await call('/v1/x', bound.key, certA)).status, 200);
    assert.equal((await call('/v1/x', bound.key, certB)).reason, 'key_certificate_mismatch');
    assert.equal((await call('/v1/x', bound.key)).reason, 'key_certificate_mismatch');
    const byUri = await create('--name', 'bound-uri', '--bind-uri', 'spiffe://example.test/partner-a');
    assert.equal((await call('/v1/x', byUri.key, certA)).status, 200);
    assert.equal((await call('/v1/x', byUri.key, certB)).reason, 'key_certificate_mismatch');
    const rejected = await cli.waitFor(/\{[^\n]*"event":"api_key_rejected"[^\n]*"reason":"key_certificate_mismatch"[^\n]*\}/);
    assert.match(rejected[0], new RegExp(`"keyId":"${bound.id}"`));
  });

  test('revoked, expired and rotated keys: revocation applies at once, rotation keeps the old key through the overlap', async () => {
    const victim = await create('--name', 'victim');
    assert.equal((await call('/v1/x', victim.key)).status, 200);
    await keys('revoke', victim.id);
    assert.equal((await call('/v1/x', victim.key)).reason, 'revoked_api_key');

    const brief = await create('--name', 'brief', '--expires', '1s');
    // facts, not timing: once the clock is past the expiry the key was given, it is refused
    assert.match(String(brief.expires), /^\d{4}-\d\d-\d\dT/, brief.expires ?? 'no expiry reported');
    await untilPast(Date.parse(String(brief.expires)));
    assert.equal((await call('/v1/x', brief.key)).reason, 'expired_api_key');
    const refuse = (...args: string[]) => runCli(['keys', ...args, '--config', file]);
    const lateRotation = await refuse('rotate', brief.id);
    assert.equal(lateRotation.code, 2);
    assert.match(lateRotation.stderr, new RegExp(`API key ${brief.id} expired at \\S+; create a new key instead`));

    const old = await create('--name', 'rotating');
    const rotated = await keys('rotate', old.id, '--overlap', '1h');
    const fresh = rotated.stdout.trim();
    assert.notEqual(fresh, old.key);
    assert.equal((await call('/v1/x', fresh)).status, 200);
    assert.equal((await call('/v1/x', old.key)).status, 200, 'the old key works during the overlap');
    const again = await refuse('rotate', old.id);
    assert.equal(again.code, 2, 'a second rotation would hand out two live successors');
    assert.match(again.stderr, new RegExp(`API key ${old.id} was rotated already, to ${fresh.slice(4, 16)}; rotate that key instead`));
    const listed = await keys('list');
    assert.match(listed.stdout, new RegExp(`${old.id}  rotating  active, expires \\S+  routes all  rotated to ${fresh.slice(4, 16)}`));
    assert.match(listed.stdout, new RegExp(`${victim.id}  victim  revoked`));
    assert.ok(!listed.stdout.includes('pck_'), 'list never prints a key');
  });

  test('bad CLI input is refused with the fix, and leaves the store as it was', async () => {
    const before = readFileSync(`${dir}/.portcullis/api-keys.json`, 'utf8');
    const bad = await runCli(['keys', 'create', '--name', 'x', '--bind-cert', 'md5:00', '--config', file]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--bind-cert md5:00: use the certificate's SHA-256 fingerprint/);
    const route = await runCli(['keys', 'create', '--name', 'x', '--routes', 'v1', '--config', file]);
    assert.match(route.stderr, /--routes: "v1" is not a route path/);
    const unknown = await runCli(['keys', 'revoke', '0123456789ab', '--config', file]);
    assert.match(unknown.stderr, /no API key 0123456789ab; see portcullis keys list/);
    assert.equal(readFileSync(`${dir}/.portcullis/api-keys.json`, 'utf8'), before);

    const other = tempDir(scope);
    mkdirSync(`${other}/.portcullis`);
    writeFileSync(`${other}/portcullis.yaml`, 'listen: { https: "127.0.0.1:0" }\n');
    writeFileSync(`${other}/.portcullis/api-keys.json`, '{"version":1,"keys":[{"id":"xyz"}]}');
    const corrupt = await runCli(['keys', 'list', '--config', `${other}/portcullis.yaml`]);
    assert.equal(corrupt.code, 1);
    assert.match(corrupt.stderr, /api-keys\.json keys\[0\]: id is not 12 hex digits; fix or remove that entry/);
  });
});

test('with workers: 2, a created key works on every worker and a revocation reaches every worker at once', async (t) => {
  const root = pki.root('keys-cluster-root');
  const server = pki.leaf('keys-cluster', root, { dns: ['api.test'] });
  const dir = tempDir(t);
  const file = `${dir}/portcullis.yaml`;
  writeFileSync(
    file,
    `listen: { https: "127.0.0.1:0" }
workers: 2
log: { access: off }
sites:
  - hosts: [api.test]
    certificates: [{ cert: ${server.chainFile}, key: ${server.keyFile} }]
    routes: [{ path: /, upstream: "builtin:whoami", apiKeys: required }]
`,
  );
  const cli = startCli(t, ['start', '--config', file], dir);
  const port = Number((await cli.waitFor(/"https":"127\.0\.0\.1:(\d+)".*"workers":2/))[1]);
  const created = await runCli(['keys', 'create', '--name', 'cluster', '--config', file]);
  assert.match(created.stderr, /API keys applied \(1 entry\): applied by 2 workers, in force for every request from now on/);
  const key = created.stdout.trim();
  // separate connections, spread over the workers by the cluster's round robin
  const statuses = async () => {
    const codes: string[] = [];
    for (let i = 0; i < 6; i++) codes.push((await curl([...resolveTo('api.test', port), '--cacert', root.certFile, '-H', `Authorization: Bearer ${key}`, '-o', '/dev/null', '-w', '%{http_code}', `https://api.test:${port}/`])).stdout);
    return codes;
  };
  assert.deepEqual(await statuses(), ['200', '200', '200', '200', '200', '200']);
  const revoked = await runCli(['keys', 'revoke', key.slice(4, 16), '--config', file]);
  assert.equal(revoked.code, 0, revoked.stderr);
  assert.deepEqual(await statuses(), ['401', '401', '401', '401', '401', '401']);
});
