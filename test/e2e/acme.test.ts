import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import type { TLSSocket } from 'node:tls';
import { startCli, type CliProcess } from '../helpers/cli-process.js';
import { curl, run, tlsClient } from '../helpers/clients.js';
import { freePort, startPebble, type Pebble } from '../helpers/pebble.js';
import { tempDir, type Scope } from '../helpers/proxy.js';

interface Setup {
  readonly dir: string;
  readonly pebble: Pebble;
  readonly https: number;
  readonly http: number;
  readonly rootFile: string;
  start(): CliProcess;
}

/** Pebble validating against the proxy's own ports (every name resolves to 127.0.0.1), and a config for one ACME site. */
async function setup(t: Scope, opts: { challenge: 'http-01' | 'tls-alpn-01'; hosts?: string[]; validity?: number; extra?: string; blocklist?: string[]; admin?: boolean }): Promise<Setup> {
  const dir = tempDir(t);
  const https = await freePort();
  const http = await freePort();
  const pebble = await startPebble(t, { httpPort: http, tlsPort: https, certificateValidityPeriod: opts.validity ?? 3600, domainBlocklist: opts.blocklist ?? [] });
  const rootFile = join(dir, 'pebble-root.pem');
  writeFileSync(rootFile, await pebble.rootPem());
  writeFileSync(
    join(dir, 'portcullis.yaml'),
    `dataDir: state
listen: { https: "127.0.0.1:${https}", http: "127.0.0.1:${http}"${opts.admin ? ', admin: "127.0.0.1:0"' : ''} }
${opts.extra ?? ''}sites:
  - hosts: [${(opts.hosts ?? ['acme.test', 'www.acme.test']).join(', ')}]
    certificates:
      - acme: { email: ops@example.test, directory: "${pebble.directory}", ca: ${pebble.caFile}, challenge: ${opts.challenge} }
    routes: [{ path: /, upstream: "builtin:whoami" }]
`,
  );
  return { dir, pebble, https, http, rootFile, start: () => startCli(t, ['start', '--config', join(dir, 'portcullis.yaml')], dir) };
}

/** The certificate served for `name`, verified against pebble's root (the chain carries the intermediate). */
async function served(s: Setup, name: string): Promise<X509Certificate> {
  const r = await run('openssl', ['s_client', '-connect', `127.0.0.1:${s.https}`, '-servername', name, '-CAfile', s.rootFile, '-verify_return_error', '-verify_hostname', name], 'Q\n');
  assert.match(r.stdout, /Verify return code: 0 \(ok\)/, `${name}: ${r.stdout.slice(-400)}${r.stderr}`);
  return new X509Certificate(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/.exec(r.stdout)?.[0] as string);
}

/** One HTTP/1.1 request on an open TLS connection; resolves with the status line once the whole body is in, rejects if the connection closes first. */
function request(socket: TLSSocket, host: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (chunk: Buffer) => {
      text += chunk.toString('latin1');
      const head = text.indexOf('\r\n\r\n');
      const length = Number(/content-length: (\d+)/i.exec(text)?.[1] ?? -1);
      if (head < 0 || length < 0 || text.length < head + 4 + length) return;
      socket.off('data', onData).off('close', onClose);
      resolve(text.split('\r\n')[0] as string);
    };
    const onClose = () => reject(new Error(`the connection closed before the response was complete: ${JSON.stringify(text)}`));
    socket.on('data', onData).once('close', onClose);
    socket.write(`GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
  });
}

describe('ACME against pebble', () => {
  test('http-01: first issuance for every name, chained to pebble\'s root; a restart reuses the stored certificate', async (t) => {
    const s = await setup(t, { challenge: 'http-01' });
    const first = s.start();
    await first.waitFor(/"event":"acme_order_succeeded","site":"acme\.test"/, 30_000);
    await first.waitFor(/"event":"reloaded","trigger":"acme certificate issued"/);
    const leaf = await served(s, 'acme.test');
    assert.equal((await served(s, 'www.acme.test')).fingerprint256, leaf.fingerprint256, 'one certificate for both names');
    assert.equal(leaf.subjectAltName?.split(', ').sort().join(), 'DNS:acme.test,DNS:www.acme.test');
    const ok = await curl(['--resolve', `acme.test:${s.https}:127.0.0.1`, '--cacert', s.rootFile, '-o', '/dev/null', '-w', '%{http_code}', `https://acme.test:${s.https}/`]);
    assert.equal(ok.stdout, '200');

    first.child.kill('SIGTERM');
    await once(first.child, 'exit');
    const second = s.start();
    await second.waitFor(/"event":"acme_renewal_scheduled","site":"acme\.test"[^\n]*"by":"a third of the lifetime left"/);
    assert.equal((await served(s, 'acme.test')).fingerprint256, leaf.fingerprint256, 'the stored certificate is served after the restart');
    assert.doesNotMatch(second.stdout + second.stderr, /acme_order_started/, 'nothing is ordered again');
  });

  test('tls-alpn-01 with two workers: the challenge is answered on the HTTPS port, and normal clients never see it', async (t) => {
    const s = await setup(t, { challenge: 'tls-alpn-01', hosts: ['alpn.test'], extra: 'workers: 2\n' });
    const cli = s.start();
    await cli.waitFor(/"event":"acme_order_succeeded","site":"alpn\.test"/, 30_000);
    await cli.waitFor(/"event":"reloaded","trigger":"acme certificate issued"/);
    const leaf = await served(s, 'alpn.test');
    assert.equal(leaf.subjectAltName, 'DNS:alpn.test');
    // acme-tls/1 with no challenge pending: refused before TLS, never the site
    const probe = await run('openssl', ['s_client', '-connect', `127.0.0.1:${s.https}`, '-servername', 'alpn.test', '-alpn', 'acme-tls/1'], 'Q\n');
    assert.doesNotMatch(probe.stdout, /BEGIN CERTIFICATE/);
    await cli.waitFor(/"event":"handshake_failed","reason":"no_acme_challenge"/);
  });

  test('renewal before expiry is swapped in while a keep-alive connection stays open; with the CA down, the next renewal backs off and the certificate keeps serving', async (t) => {
    // 90-second certificates: renewed once 30 s are left, and the new one passes rotationMinValidity (1 minute);
    // the connection idles about a minute until then, longer than the default timeouts.idle
    const s = await setup(t, { challenge: 'http-01', hosts: ['renew.test'], validity: 90, extra: 'tls: { rotationMinValidity: 1m }\ntimeouts: { idle: 5m }\n' });
    const cli = s.start();
    await cli.waitFor(/"event":"reloaded","trigger":"acme certificate issued"/, 30_000);
    const before = await served(s, 'renew.test');
    const socket = tlsClient(s.https, 'renew.test', s.rootFile);
    t.after(() => socket.destroy());
    await once(socket, 'secureConnect');
    assert.equal(await request(socket, 'renew.test'), 'HTTP/1.1 200 OK');

    await cli.waitFor(/"event":"certificate_rotated","site":"renew\.test"/, 90_000);
    assert.equal(await request(socket, 'renew.test'), 'HTTP/1.1 200 OK', 'the open connection goes on');
    const after = await served(s, 'renew.test');
    assert.notEqual(after.serialNumber, before.serialNumber, 'new handshakes get the renewed certificate');
    assert.ok(Date.parse(after.validTo) > Date.parse(before.validTo));
    assert.equal((cli.stdout + cli.stderr).match(/"event":"acme_order_succeeded"/g)?.length, 2);

    // the CA goes away: the next renewal fails, is retried with backoff, and the current certificate keeps serving
    await s.pebble.stop();
    await cli.waitFor(/"event":"acme_order_failed","site":"renew\.test","problemType":"unreachable"[^\n]*"attempt":1,"retryInMs":\d+/, 90_000);
    assert.equal((await served(s, 'renew.test')).serialNumber, after.serialNumber);
  });

  test('an order the CA rejects surfaces its problem type and detail, in the log and the metrics', async (t) => {
    const s = await setup(t, { challenge: 'http-01', hosts: ['blocked.test'], blocklist: ['blocked.test'], admin: true });
    const cli = s.start();
    const failed = await cli.waitFor(/"event":"acme_order_failed","site":"blocked\.test","problemType":"rejectedIdentifier","detail":"([^"]*)/, 30_000);
    assert.match(failed[1] as string, /forbidden by policy/);
    const admin = Number((await cli.waitFor(/"admin":"127\.0\.0\.1:(\d+)"/))[1]);
    const token = readFileSync(join(s.dir, 'state', 'admin', 'token'), 'utf8').trim();
    const metrics = await curl(['--cacert', join(s.dir, 'state', 'ca', 'ca.pem'), '-H', `Authorization: Bearer ${token}`, `https://127.0.0.1:${admin}/metrics`]);
    assert.match(metrics.stdout, /portcullis_acme_orders_total\{site="blocked\.test",result="failed",reason="rejectedIdentifier"\} 1/);
    assert.match(metrics.stdout, /portcullis_acme_next_renewal_timestamp_seconds\{site="blocked\.test"\} \d+/);
  });
});
