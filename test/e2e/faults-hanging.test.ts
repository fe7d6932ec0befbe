import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { startCli, type CliProcess } from '../helpers/cli-process.js';
import { curl, resolveTo, run } from '../helpers/clients.js';
import { TestPki, type Ca, type Leaf } from '../helpers/pki.js';
import { startProxy, tempDir, type RunningProxy, type Scope } from '../helpers/proxy.js';

/**
 * Endpoints the proxy depends on that accept the TCP connection, read the
 * request and never answer: OCSP responders (client certificates and
 * stapling), CRL URLs and an ACME directory. Each wait must end at its
 * documented bound with the documented answer, and nobody else may wait.
 *
 * Bounds (docs/revocation.md, docs/ocsp-stapling.md, src/acme/acme-http.ts):
 * OCSP for client certificates 5 s, CRL fetch 10 s, OCSP for stapling 10 s,
 * one ACME directory request 10 s. None is configurable; all are short
 * enough to be waited for here.
 */

const pki = new TestPki();
after(() => pki.cleanup());
const day = 86_400_000;

interface Received {
  /** When the first bytes of the connection arrived (ms since the epoch). */
  readonly at: number;
  /** Its first line ("POST /ocsp HTTP/1.1"), or a note for binary data (a TLS ClientHello). */
  readonly firstLine: string;
}

interface HangingServer {
  readonly port: number;
  readonly url: string;
  /** Every connection that sent something, in order. */
  readonly received: Received[];
  /** Resolves once `count` connections have sent something; rejects after `timeoutMs`. */
  receivedCount(count: number, timeoutMs?: number): Promise<Received[]>;
}

/** A TCP server that accepts, reads, and never answers nor closes; its sockets are destroyed after the test. */
async function hangingServer(t: Scope): Promise<HangingServer> {
  const sockets = new Set<Socket>();
  const received: Received[] = [];
  const events = new EventEmitter();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.once('close', () => sockets.delete(socket));
    socket.once('data', (d: Buffer) => {
      received.push({ at: Date.now(), firstLine: d[0] === 0x16 ? 'TLS ClientHello' : (d.toString('latin1').split('\r\n')[0] as string) });
      events.emit('received');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    received,
    receivedCount: (count, timeoutMs = 20_000) =>
      new Promise((resolve, reject) => {
        const check = () => {
          if (received.length < count) return;
          clearTimeout(timer);
          events.off('received', check);
          resolve(received.slice(0, count));
        };
        const timer = setTimeout(() => {
          events.off('received', check);
          reject(new Error(`the hanging server got ${received.length} connection(s), not ${count}, within ${timeoutMs} ms`));
        }, timeoutMs);
        events.on('received', check);
        check();
      }),
  };
}

interface Answer {
  readonly status: string;
  readonly reason: string | null;
  /** When curl returned (ms since the epoch). */
  readonly at: number;
}

/** One request with curl (presenting `client` when given); bounded by curl's own 15 s. */
async function ask(port: number, host: string, server: Ca, client: Leaf | null): Promise<Answer> {
  const creds = client ? ['--cert', client.certFile, '--key', client.keyFile] : [];
  const r = await curl([...resolveTo(host, port), '--cacert', server.certFile, ...creds, '-w', '\n%{http_code}', `https://${host}:${port}/`]);
  assert.equal(r.code, 0, `${host}: ${r.stderr}`);
  const cut = r.stdout.lastIndexOf('\n');
  const status = r.stdout.slice(cut + 1);
  return { status, reason: status === '200' ? null : ((JSON.parse(r.stdout.slice(0, cut)) as { reason?: string }).reason ?? null), at: Date.now() };
}

/** Tracks whether a promise has settled yet. */
function watch<T>(promise: Promise<T>): { promise: Promise<T>; settled: () => boolean } {
  let done = false;
  void promise.then(
    () => (done = true),
    () => (done = true),
  );
  return { promise, settled: () => done };
}

const timeOf = (line: Record<string, unknown>) => Number(line.time);

/**
 * Asserts that each wait ended at its bound: not much later (`slack`), and
 * not early (the timer starts a little before the request reaches the
 * server, hence a second below the bound). Every wait is checked before
 * failing, so the message lists all that missed.
 */
function assertBounds(waits: readonly { what: string; ms: number; bound: number; slack?: number }[]): void {
  const missed = waits.filter(({ ms, bound, slack = 1_500 }) => ms < bound - 1_000 || ms > bound + slack);
  assert.deepEqual(
    missed.map(({ what, ms, bound }) => `${what} took ${ms} ms; the bound is ${bound} ms`),
    [],
  );
}

function site(host: string, server: Leaf, clientAuth = ''): string {
  return `
  - hosts: [${host}]
    certificates: [{ cert: ${server.chainFile}, key: ${server.keyFile} }]
${clientAuth ? `    clientAuth: ${clientAuth}\n` : ''}    routes: [{ path: /, upstream: "builtin:whoami" }]`;
}

describe('endpoints that accept and never answer', { concurrency: true }, () => {
  test('a hanging OCSP responder for client certificates: the decision waits 5 s, then revocation_unavailable under reject and a warning under allow; other sites answer meanwhile', async (t) => {
    const hang = await hangingServer(t);
    const root = pki.root('hang-ocsp-root');
    const clients = pki.root('hang-ocsp-clients');
    const server = pki.leaf('hang-ocsp-server', root, { dns: ['reject.test', 'allow.test', 'plain.test'] });
    const refused = pki.leaf('hang-ocsp-refused', clients, { eku: 'clientAuth', ocspUrl: `${hang.url}/ocsp` });
    const admitted = pki.leaf('hang-ocsp-admitted', clients, { eku: 'clientAuth', ocspUrl: `${hang.url}/ocsp` });
    const p: RunningProxy = await startProxy(
      t,
      `listen: { https: "127.0.0.1:0" }\nsites:${site('reject.test', server, `{ mode: require, ca: [${clients.certFile}], ocsp: true }`)}${site(
        'allow.test',
        server,
        `{ mode: require, ca: [${clients.certFile}], ocsp: true, onRevocationUnavailable: allow }`,
      )}${site('plain.test', server)}\n`,
    );

    const rejected = watch(ask(p.port, 'reject.test', root, refused));
    const allowed = watch(ask(p.port, 'allow.test', root, admitted));
    const queries = await hang.receivedCount(2);
    assert.deepEqual(
      queries.map((q) => q.firstLine),
      ['POST /ocsp HTTP/1.1', 'POST /ocsp HTTP/1.1'],
    );
    const plain = await ask(p.port, 'plain.test', root, null);
    assert.equal(plain.status, '200');
    assert.ok(!rejected.settled() && !allowed.settled(), 'the other site answered while both OCSP queries were still hanging');

    assert.deepEqual({ ...(await rejected.promise), at: 0 }, { status: '403', reason: 'revocation_unavailable', at: 0 });
    const refusal = await p.waitForLog((l) => l.event === 'client_cert_rejected' && l.sni === 'reject.test');
    assert.equal(refusal.reason, 'revocation_unavailable');
    assert.match(String(refusal.detail), /CN=hang-ocsp-refused \(serial [0-9A-F]+\): OCSP http:\/\/127\.0\.0\.1:\d+\/ocsp: .*did not answer within 5000 ms/);

    assert.equal((await allowed.promise).status, '200', 'admitted under onRevocationUnavailable: allow');
    const warning = await p.waitForLog((l) => l.event === 'revocation_unavailable_allowed');
    assert.equal(warning.level, 40);
    assert.equal(warning.site, 'allow.test');
    assert.match(String(warning.detail), /CN=hang-ocsp-admitted .*did not answer within 5000 ms/);

    // a failed query is not repeated for 30 s: the next connection is decided at once, without asking again
    const again = await ask(p.port, 'reject.test', root, refused);
    assert.deepEqual({ ...again, at: 0 }, { status: '403', reason: 'revocation_unavailable', at: 0 });
    assert.equal(hang.received.length, 2, 'the hanging responder was not asked again');
    assert.match(await p.proxy.metrics.registry.metrics(), /portcullis_ocsp_requests_total\{purpose="client",result="unreachable"\} 2/);

    const received = Math.max(...queries.map((q) => q.at));
    assertBounds([
      { what: 'the OCSP wait under reject', ms: timeOf(refusal) - received, bound: 5_000 },
      { what: 'the OCSP wait under allow', ms: timeOf(warning) - received, bound: 5_000 },
    ]);
  });

  test('a hanging CRL URL: connections wait for its first load at most 10 s, then revocation_unavailable under reject and a warning under allow; other sites answer meanwhile', async (t) => {
    const hang = await hangingServer(t);
    const root = pki.root('hang-crl-root');
    const clients = pki.root('hang-crl-clients');
    const server = pki.leaf('hang-crl-server', root, { dns: ['reject.test', 'allow.test', 'plain.test'] });
    const refused = pki.leaf('hang-crl-refused', clients, { eku: 'clientAuth' });
    const admitted = pki.leaf('hang-crl-admitted', clients, { eku: 'clientAuth' });
    const crl = `${hang.url}/clients.crl`;
    const p = await startProxy(
      t,
      `listen: { https: "127.0.0.1:0" }\nsites:${site('reject.test', server, `{ mode: require, ca: [${clients.certFile}], crl: ["${crl}"] }`)}${site(
        'allow.test',
        server,
        `{ mode: require, ca: [${clients.certFile}], crl: ["${crl}"], onRevocationUnavailable: allow }`,
      )}${site('plain.test', server)}\n`,
    );
    const [fetch] = (await hang.receivedCount(1)) as [Received];
    assert.equal(fetch.firstLine, 'GET /clients.crl HTTP/1.1', 'one fetch for both sites, begun at start');

    const rejected = watch(ask(p.port, 'reject.test', root, refused));
    const allowed = watch(ask(p.port, 'allow.test', root, admitted));
    await p.waitForLog((l) => l.event === 'connection_accepted' && l.sni === 'allow.test');
    await p.waitForLog((l) => l.event === 'connection_accepted' && l.sni === 'reject.test');
    const plain = await ask(p.port, 'plain.test', root, null);
    assert.equal(plain.status, '200');
    assert.ok(!rejected.settled() && !allowed.settled(), 'the other site answered while the CRL fetch was still hanging');

    assert.deepEqual({ ...(await rejected.promise), at: 0 }, { status: '403', reason: 'revocation_unavailable', at: 0 });
    assert.equal((await allowed.promise).status, '200', 'admitted under onRevocationUnavailable: allow');
    const report = await p.waitForLog((l) => l.event === 'crl_rejected');
    assert.equal(report.source, crl);
    assert.equal(report.reason, 'timeout');
    assert.equal(report.detail, `${crl} did not answer within 10000 ms`);
    assert.equal(report.keepsUsing, 'none');
    const refusal = await p.waitForLog((l) => l.event === 'client_cert_rejected' && l.sni === 'reject.test');
    assert.equal(refusal.reason, 'revocation_unavailable');
    assert.match(String(refusal.detail), /CN=hang-crl-refused .*did not answer within 10000 ms/);
    const warning = await p.waitForLog((l) => l.event === 'revocation_unavailable_allowed');
    assert.equal(warning.site, 'allow.test');

    // the first load has failed: later connections are decided at once, without waiting for the retry
    const again = await ask(p.port, 'reject.test', root, refused);
    assert.deepEqual({ ...again, at: 0 }, { status: '403', reason: 'revocation_unavailable', at: 0 });
    assert.ok(again.at - timeOf(report) < 3_000, 'no wait for the next fetch');

    assertBounds([
      { what: 'the CRL fetch', ms: timeOf(report) - fetch.at, bound: 10_000 },
      { what: 'the wait under reject', ms: timeOf(refusal) - fetch.at, bound: 10_000 },
    ]);
  });

  test('a CRL URL that timed out is fetched again 5 s later, as documented ("retried with backoff, 5 s doubling")', async (t) => {
    const hang = await hangingServer(t);
    const root = pki.root('hang-crl-retry-root');
    const clients = pki.root('hang-crl-retry-clients');
    const server = pki.leaf('hang-crl-retry-server', root, { dns: ['retry.test'] });
    const p = await startProxy(t, `listen: { https: "127.0.0.1:0" }\nsites:${site('retry.test', server, `{ mode: require, ca: [${clients.certFile}], crl: ["${hang.url}/retry.crl"] }`)}\n`);
    const timedOut = await p.waitForLog((l) => l.event === 'crl_rejected', { timeoutMs: 15_000 });
    assert.equal(timedOut.reason, 'timeout');
    const [, second] = (await hang.receivedCount(2, 30_000)) as [Received, Received];
    assert.equal(second.firstLine, 'GET /retry.crl HTTP/1.1');
    assertBounds([{ what: 'the wait before the first retry', ms: second.at - timeOf(timedOut), bound: 5_000, slack: 1_000 }]);
  });

  test('a hanging OCSP responder for stapling: handshakes go on without a staple, and the fetch fails as unreachable after 10 s with a retry in 30 s', async (t) => {
    const hang = await hangingServer(t);
    const root = pki.root('hang-staple-root');
    const issuer = pki.intermediate('hang-staple-ca', root);
    const leaf = pki.leaf('hang-staple', issuer, { dns: ['staple.test'], ocspUrl: `${hang.url}/` });
    const p = await startProxy(t, `listen: { https: "127.0.0.1:0" }\nsites:${site('staple.test', leaf)}\n`);
    const [fetch] = (await hang.receivedCount(1)) as [Received];
    assert.equal(fetch.firstLine, 'POST / HTTP/1.1');

    const handshake = () => run('openssl', ['s_client', '-connect', `127.0.0.1:${p.port}`, '-servername', 'staple.test', '-status', '-CAfile', root.certFile, '-verify_return_error'], '', 15_000);
    const during = await handshake();
    assert.equal(during.code, 0, during.stderr);
    assert.match(during.stdout, /Verify return code: 0 \(ok\)/);
    assert.match(during.stdout, /OCSP response: no response sent/);
    assert.ok(!p.logs.some((l) => l.event === 'ocsp_staple_failed'), 'the handshake did not wait for the hanging fetch');
    assert.equal((await ask(p.port, 'staple.test', root, null)).status, '200');

    const failed = await p.waitForLog((l) => l.event === 'ocsp_staple_failed', { timeoutMs: 15_000 });
    assert.equal(failed.level, 50, 'error: nothing is stapled');
    assert.equal(failed.site, 'staple.test');
    assert.equal(failed.reason, 'unreachable');
    assert.equal(failed.detail, `${hang.url}/ did not answer within 10000 ms`);
    assert.equal(failed.stapling, 'nothing');
    assert.equal(failed.failures, 1);
    const retryIn = Date.parse(String(failed.retryAt)) - timeOf(failed);
    assert.ok(retryIn >= 29_900 && retryIn <= 33_100, `first retry in ${retryIn} ms: 30 s, up to 10 % later`);
    const metric = await p.proxy.metrics.registry.getSingleMetric('portcullis_ocsp_staple_status')?.get();
    assert.equal(metric?.values.find((v) => v.labels.site === 'staple.test')?.value, 0);

    const later = await handshake();
    assert.match(later.stdout, /Verify return code: 0 \(ok\)/);
    assert.match(later.stdout, /OCSP response: no response sent/);
    assertBounds([{ what: 'the staple fetch', ms: timeOf(failed) - fetch.at, bound: 10_000 }]);
  });

  test('a hanging ACME directory: the stored certificate due for renewal keeps serving, and the order fails as unreachable within 10 s with a retry in about 10 s', async (t) => {
    const hang = await hangingServer(t);
    const stored = pki.root('hang-acme-stored');
    const other = pki.root('hang-acme-other');
    // six days of life, one left: past the renewal point, still valid
    const acmeLeaf = pki.leaf('hang-acme', stored, { dns: ['acme.test'], notBefore: new Date(Date.now() - 5 * day), notAfter: new Date(Date.now() + day) });
    const otherLeaf = pki.leaf('hang-acme-other', other, { dns: ['other.test'] });
    const dir = tempDir(t);
    const certificates = join(dir, 'state', 'acme', 'certificates');
    mkdirSync(certificates, { recursive: true });
    copyFileSync(acmeLeaf.chainFile, join(certificates, 'acme.test.pem'));
    copyFileSync(acmeLeaf.keyFile, join(certificates, 'acme.test.key'));
    const file = join(dir, 'portcullis.yaml');
    writeFileSync(
      file,
      `dataDir: state
listen: { https: "127.0.0.1:0", http: "127.0.0.1:0" }
log: { access: off }
sites:
  - hosts: [acme.test]
    certificates: [{ acme: { email: ops@example.test, directory: "https://127.0.0.1:${hang.port}/dir" } }]
    routes: [{ path: /, upstream: "builtin:whoami" }]${site('other.test', otherLeaf)}
`,
    );
    const cli: CliProcess = startCli(t, ['start', '--config', file], dir);
    const port = Number((await cli.waitFor(/"event":"listening"[^\n]*"https":"127\.0\.0\.1:(\d+)"/))[1]);
    const line = async (pattern: RegExp, timeoutMs = 60_000) => JSON.parse((await cli.waitFor(pattern, timeoutMs))[0]) as Record<string, unknown>;

    // the renewal plan first asks the directory for ARI: that request hangs
    const [lookup] = (await hang.receivedCount(1)) as [Received];
    assert.equal(lookup.firstLine, 'TLS ClientHello');
    const served = await run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'acme.test', '-CAfile', stored.certFile, '-verify_return_error'], 'Q\n');
    assert.match(served.stdout, /Verify return code: 0 \(ok\)/, 'the stored certificate is served while the directory hangs');
    assert.equal((await ask(port, 'other.test', other, null)).status, '200');
    assert.doesNotMatch(cli.stderr, /acme_renewal_scheduled/, 'neither waited for the hanging directory');

    const scheduled = await line(/\{[^\n]*"event":"acme_renewal_scheduled"[^\n]*\}/);
    assert.equal(scheduled.by, 'a third of the lifetime left', 'without an answer from the directory, the lifetime rule plans the renewal');
    const started = await line(/\{[^\n]*"event":"acme_order_started"[^\n]*\}/);
    const failed = await line(/\{[^\n]*"event":"acme_order_failed"[^\n]*\}/);
    assert.equal(failed.site, 'acme.test');
    assert.equal(failed.problemType, 'unreachable');
    assert.match(String(failed.detail), /^the ACME server cannot be reached \(ETIMEDOUT\): no answer within 10 s$/);
    assert.equal(failed.attempt, 1);
    assert.ok(Number(failed.retryInMs) >= 9_000 && Number(failed.retryInMs) <= 11_000, `retry in ${String(failed.retryInMs)} ms: 10 s ± 10 %`);
    const again = await run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'acme.test', '-CAfile', stored.certFile, '-verify_return_error'], 'Q\n');
    assert.match(again.stdout, /Verify return code: 0 \(ok\)/, 'the stored certificate still serves after the failed order');

    assertBounds([
      { what: 'the ARI lookup of the renewal plan', ms: Date.parse(String(scheduled.time)) - lookup.at, bound: 10_000 },
      { what: 'the failed order', ms: Date.parse(String(failed.time)) - Date.parse(String(started.time)), bound: 10_000 },
    ]);
  });
});
