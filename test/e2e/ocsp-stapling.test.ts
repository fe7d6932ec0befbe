import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { run } from '../helpers/clients.js';
import { expectOcspStatus, startOcspResponder, type OcspResponder } from '../helpers/ocsp-responder.js';
import { TestPki, type Ca, type Leaf } from '../helpers/pki.js';
import { startProxy, tempDir, type RunningProxy, type Scope } from '../helpers/proxy.js';
import { closedPort } from '../helpers/upstream.js';

const pki = new TestPki();
after(() => pki.cleanup());
let root: Ca;
let issuer: Ca;
before(() => {
  root = pki.root('staple-root');
  issuer = pki.intermediate('staple-ca', root);
});

interface Staple {
  /** The handshake completed and the server certificate verified. */
  readonly verified: boolean;
  /** "successful", or null when no response was stapled. */
  readonly responseStatus: string | null;
  readonly certStatus: string | null;
  readonly thisUpdate: string | null;
}

/** One verifying handshake with `openssl s_client -status`: what the server stapled. */
async function stapleOf(port: number, host: string): Promise<Staple> {
  const r = await run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', host, '-status', '-CAfile', root.certFile, '-verify_return_error'], '', 15_000);
  const field = (name: string) => new RegExp(`^\\s*${name}: (.+)$`, 'm').exec(r.stdout)?.[1]?.trim() ?? null;
  return {
    verified: r.code === 0 && /Verify return code: 0 \(ok\)/.test(r.stdout),
    responseStatus: /OCSP response: no response sent/.test(r.stdout) ? null : (field('OCSP Response Status')?.split(' ')[0] ?? null),
    certStatus: field('Cert Status'),
    thisUpdate: field('This Update'),
  };
}

/** The log lines of `event` so far. */
const eventsOf = (p: RunningProxy, event: string) => p.logs.filter((l) => l.event === event);

/** Waits until the proxy has logged `count` lines of `event`, each awaited as it is written (at most `timeoutMs` for each). */
async function waitForEvent(p: RunningProxy, event: string, count = 1, timeoutMs = 20_000): Promise<Record<string, unknown>[]> {
  let after = 0;
  for (let n = 0; n < count; n++) {
    const line = await p.waitForLog((l) => l.event === event, { after, timeoutMs });
    after = p.logs.indexOf(line) + 1;
  }
  return eventsOf(p, event);
}

function siteYaml(host: string, leaves: readonly Leaf[]): string {
  return `
listen: { https: "127.0.0.1:0" }
sites:
  - hosts: [${host}]
    certificates:
${leaves.map((l) => `      - { cert: ${l.chainFile}, key: ${l.keyFile} }`).join('\n')}
    routes: [{ path: /, upstream: "builtin:whoami" }]
`;
}

async function stapleGauge(p: RunningProxy, site: string): Promise<number | undefined> {
  const metric = await p.proxy.metrics.registry.getSingleMetric('portcullis_ocsp_staple_status')?.get();
  return metric?.values.find((v) => v.labels.site === site)?.value;
}

/** A leaf of `issuer` for `host` whose OCSP responder is `responder`, once that responder knows it. */
async function servedLeaf(name: string, host: string, responder: OcspResponder): Promise<Leaf> {
  const leaf = pki.leaf(name, issuer, { dns: [host], ocspUrl: responder.url });
  // a fresh certificate: the responder knows it at once
  await expectOcspStatus(responder, leaf.certFile, issuer, 'good');
  return leaf;
}

// Both take a minute or less of real time (responses valid for one minute): they run side by side.
describe('OCSP stapling over the life of a response', { concurrency: true }, () => {
  test('staples a good response, and a newer one once the previous one is halfway to its nextUpdate', async (t) => {
    // nextUpdate one minute after thisUpdate: the stapler refreshes after about 30 s
    const responder = await startOcspResponder(t, pki, issuer, { nmin: 1 });
    const leaf = await servedLeaf('staple-good', 'good.test', responder);
    const p = await startProxy(t, siteYaml('good.test', [leaf]));
    const [updated] = await waitForEvent(p, 'ocsp_staple_updated');
    assert.equal(updated?.site, 'good.test');
    assert.equal(typeof updated?.nextUpdate, 'string');

    const first = await stapleOf(p.port, 'good.test');
    assert.ok(first.verified);
    assert.equal(first.responseStatus, 'successful');
    assert.equal(first.certStatus, 'good');
    assert.equal(await stapleGauge(p, 'good.test'), 1);

    // waits on the refresh itself (about 30 s later), bounded
    const [, second] = await waitForEvent(p, 'ocsp_staple_updated', 2, 100_000);
    assert.notEqual(second?.thisUpdate, updated?.thisUpdate);
    const now = await stapleOf(p.port, 'good.test');
    assert.equal(now.certStatus, 'good');
    assert.ok(first.thisUpdate && now.thisUpdate);
    assert.ok(new Date(now.thisUpdate) > new Date(first.thisUpdate), `${now.thisUpdate} after ${first.thisUpdate}`);
  });

  test('keeps stapling the last good response while the responder is down, and stops at its nextUpdate', async (t) => {
    const responder = await startOcspResponder(t, pki, issuer, { nmin: 1 });
    const leaf = await servedLeaf('staple-outage', 'outage.test', responder);
    const p = await startProxy(t, siteYaml('outage.test', [leaf]));
    await waitForEvent(p, 'ocsp_staple_updated');
    const before = await stapleOf(p.port, 'outage.test');
    assert.equal(before.certStatus, 'good');
    await responder.stop();

    // the refresh, about 30 s later, fails: a warning, and the previous response is still stapled
    const [failed] = await waitForEvent(p, 'ocsp_staple_failed', 1, 100_000);
    assert.equal(failed?.reason, 'unreachable');
    assert.equal(failed?.level, 40);
    assert.match(String(failed?.stapling), /^previous response until /);
    const during = await stapleOf(p.port, 'outage.test');
    assert.equal(during.certStatus, 'good');
    assert.equal(during.thisUpdate, before.thisUpdate);

    // at its nextUpdate it is no longer stapled
    await waitForEvent(p, 'ocsp_staple_expired', 1, 100_000);
    const after = await stapleOf(p.port, 'outage.test');
    assert.ok(after.verified);
    assert.equal(after.responseStatus, null);
    assert.equal(await stapleGauge(p, 'outage.test'), 0);
  });
});

describe('OCSP stapling when no good answer can be had', () => {
  test('staples nothing and logs why when the responder is down from the start, and handshakes still succeed', async (t) => {
    const leaf = pki.leaf('staple-down', issuer, { dns: ['down.test'], ocspUrl: `http://127.0.0.1:${await closedPort()}/` });
    const p = await startProxy(t, siteYaml('down.test', [leaf]));
    const [failed] = await waitForEvent(p, 'ocsp_staple_failed');
    assert.equal(failed?.reason, 'unreachable');
    assert.equal(failed?.level, 50, 'an error: nothing is stapled');
    const staple = await stapleOf(p.port, 'down.test');
    assert.ok(staple.verified);
    assert.equal(staple.responseStatus, null);
    assert.equal(await stapleGauge(p, 'down.test'), 0);
    assert.equal(eventsOf(p, 'ocsp_must_staple_unavailable').length, 0, 'the certificate does not ask for must-staple');
  });

  test('does not staple a revoked answer for our certificate and logs an error', async (t) => {
    const responder = await startOcspResponder(t, pki, issuer, { nmin: 10 });
    const leaf = await servedLeaf('staple-revoked', 'revoked.test', responder);
    pki.revoke(issuer, leaf.certFile);
    await expectOcspStatus(responder, leaf.certFile, issuer, 'revoked');
    const p = await startProxy(t, siteYaml('revoked.test', [leaf]));
    const [revoked] = await waitForEvent(p, 'ocsp_certificate_revoked');
    assert.equal(revoked?.level, 50);
    assert.equal(typeof revoked?.revokedAt, 'string');
    const staple = await stapleOf(p.port, 'revoked.test');
    assert.ok(staple.verified);
    assert.equal(staple.responseStatus, null);
    assert.equal(eventsOf(p, 'ocsp_staple_updated').length, 0);
  });

  test('reports a must-staple certificate that names no responder', async (t) => {
    const leaf = mustStapleLeaf(t, 'must.test');
    const p = await startProxy(t, siteYaml('must.test', [leaf]));
    const [event] = await waitForEvent(p, 'ocsp_must_staple_unavailable');
    assert.equal(event?.level, 50);
    assert.equal(event?.site, 'must.test');
    assert.equal((await stapleOf(p.port, 'must.test')).responseStatus, null);
  });

  test('staples nothing on a site serving ECDSA and RSA certificates side by side, and says why', async (t) => {
    const responder = await startOcspResponder(t, pki, issuer, { nmin: 10 });
    const ec = await servedLeaf('staple-pair-ec', 'pair.test', responder);
    const rsa = pki.leaf('staple-pair-rsa', issuer, { dns: ['pair.test'], ocspUrl: responder.url, key: 'rsa' });
    const p = await startProxy(t, siteYaml('pair.test', [ec, rsa]));
    const skipped = await waitForEvent(p, 'ocsp_staple_skipped', 2);
    assert.deepEqual(skipped.map((e) => e.reason), ['several_certificates', 'several_certificates']);
    const staple = await stapleOf(p.port, 'pair.test');
    assert.ok(staple.verified);
    assert.equal(staple.responseStatus, null);
  });
});

/** A leaf of `issuer` with the TLS Feature extension (status_request, RFC 7633) and no OCSP responder; the chain file holds the issuer. */
function mustStapleLeaf(t: Scope, host: string): Leaf {
  const dir = tempDir(t);
  const keyFile = join(dir, 'must.key');
  const csr = join(dir, 'must.csr');
  const ext = join(dir, 'must.ext');
  const certFile = join(dir, 'must.pem');
  execFileSync('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', keyFile, '-subj', `/CN=${host}`, '-out', csr], { stdio: 'ignore' });
  writeFileSync(ext, ['[ ext ]', 'basicConstraints = critical,CA:FALSE', 'keyUsage = critical,digitalSignature', 'extendedKeyUsage = serverAuth', `subjectAltName = DNS:${host}`, 'authorityKeyIdentifier = keyid', 'tlsfeature = status_request', ''].join('\n'));
  execFileSync('openssl', ['x509', '-req', '-in', csr, '-CA', issuer.certFile, '-CAkey', issuer.keyFile, '-set_serial', '0x7e57', '-days', '2', '-sha256', '-extfile', ext, '-extensions', 'ext', '-out', certFile], { stdio: 'ignore' });
  const certPem = readFileSync(certFile, 'utf8');
  const chainFile = join(dir, 'must.chain.pem');
  writeFileSync(chainFile, certPem + readFileSync(issuer.certFile, 'utf8'));
  return { certFile, keyFile, chainFile, certPem };
}
