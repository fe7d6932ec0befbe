import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { certificateSource } from '../../src/config/index.js';
import { acmeCertificateFiles, internalCertificateFiles, quickstartCertificateFiles, resolveDataDir } from '../../src/state/index.js';
import { quickstartSource } from '../../src/supervisor/config-source.js';
import { tempDir } from '../helpers/proxy.js';

describe('certificate sources', () => {
  test('each source names its pair where the data-dir layout keeps it, or where the config says', () => {
    const dataDir = '/srv/portcullis';
    const hosts = ['api.test', 'www.api.test'];
    assert.deepEqual(certificateSource.file('/etc/tls/api.pem', '/etc/tls/api.key'), { kind: 'file', files: { certFile: '/etc/tls/api.pem', keyFile: '/etc/tls/api.key' } });
    assert.deepEqual(certificateSource.internal(dataDir, hosts), { kind: 'internal', files: internalCertificateFiles(dataDir, 'api.test'), hosts });
    assert.deepEqual(certificateSource.acme(dataDir, hosts), { kind: 'acme', files: acmeCertificateFiles(dataDir, 'api.test'), hosts });
    assert.deepEqual(certificateSource.quickstart(dataDir, ['localhost']), { kind: 'quickstart', files: quickstartCertificateFiles(dataDir), hosts: ['localhost'] });
  });

  test("the quickstart's certificate is renewed like an internal one: a missing one is issued again by the same CA, a good one is left alone", async (t) => {
    const workDir = tempDir(t);
    const source = quickstartSource(workDir, '127.0.0.1:0');
    const { config } = await source.load();
    const files = quickstartCertificateFiles(resolveDataDir(workDir));
    assert.equal(config.sites[0]?.certificates[0]?.certFile, files.certFile);
    assert.deepEqual(await source.renewInternal?.(), [], 'a fresh certificate is not renewed');
    rmSync(files.certFile);
    assert.deepEqual(await source.renewInternal?.(), [files.certFile]);
    assert.ok(existsSync(files.keyFile));
    const ca = new X509Certificate(readFileSync(source.caFile as string));
    assert.ok(new X509Certificate(readFileSync(files.certFile)).checkIssued(ca), 'issued by the CA the quickstart trusts');
    assert.ok(existsSync(join(resolveDataDir(workDir), 'ca', 'ca.pem')));
  });
});
