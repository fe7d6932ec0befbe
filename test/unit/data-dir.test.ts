import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, test } from 'node:test';
import { writeApiKeys } from '../../src/access/index.js';
import { ensureAdminToken } from '../../src/admin/admin-token.js';
import { dataDirOf } from '../../src/cli/data-dir.js';
import { loadConfigFile, quickstart } from '../../src/config/index.js';
import { CaStore } from '../../src/pki/index.js';
import {
  acmeAccountKeys,
  acmeCertificateFiles,
  acmeCertificateKeys,
  adminCertificateFiles,
  adminTokenFile,
  apiKeysFile,
  caFolder,
  controlSocketFile,
  defaultDataDir,
  denyListFile,
  internalCertificateFiles,
  inventoryFile,
  inventoryFolder,
  memoryState,
  quickstartCertificateFiles,
  resolveDataDir,
  stateValueFile,
  weakClientsFile,
  weakClientsFolder,
} from '../../src/state/index.js';
import { readInventory } from '../../src/telemetry/index.js';
import { writeDenyList } from '../../src/trust/index.js';
import { tempDir } from '../helpers/proxy.js';

describe('the dataDir layout', () => {
  // Where operators, backups and the docs find each file: a row that changes moves existing state out of reach.
  test('puts every location where the docs say it is', () => {
    const d = '/srv/state';
    const rows: [string, string | { certFile: string; keyFile: string }, string | { certFile: string; keyFile: string }][] = [
      ['deny list', denyListFile(d), 'deny-list.json'],
      ['API keys', apiKeysFile(d), 'api-keys.json'],
      ['control socket', controlSocketFile(d), 'control.sock'],
      ['CA folder', caFolder(d), 'ca'],
      ['admin token', adminTokenFile(d), 'admin/token'],
      ['admin listener certificate', adminCertificateFiles(d), { certFile: 'admin/listener.pem', keyFile: 'admin/listener.key' }],
      ['quickstart certificate', quickstartCertificateFiles(d), { certFile: 'quickstart/localhost.pem', keyFile: 'quickstart/localhost.key' }],
      ['internal certificate', internalCertificateFiles(d, 'api.test'), { certFile: 'internal/api.test.pem', keyFile: 'internal/api.test.key' }],
      ['inventory folder', inventoryFolder(d), 'inventory'],
      ['one process inventory', inventoryFile(d, 'worker-2'), 'inventory/worker-2.json'],
      ['weak-clients folder', weakClientsFolder(d), 'weak-clients'],
      ['one process weak clients', weakClientsFile(d, 'main'), 'weak-clients/main.json'],
      ['ACME certificate', acmeCertificateFiles(d, 'api.test'), { certFile: 'acme/certificates/api.test.pem', keyFile: 'acme/certificates/api.test.key' }],
    ];
    const under = (p: string) => relative(d, p);
    for (const [what, actual, expected] of rows) {
      const got = typeof actual === 'string' ? under(actual) : { certFile: under(actual.certFile), keyFile: under(actual.keyFile) };
      assert.deepEqual(got, expected, what);
    }
  });

  test('names certificate files after the first host, with a wildcard star and other unsafe characters spelled "_"', () => {
    assert.equal(internalCertificateFiles('/d', '*.api.test').certFile, '/d/internal/_.api.test.pem');
    assert.equal(internalCertificateFiles('/d', '::1').keyFile, '/d/internal/__1.key');
    assert.equal(internalCertificateFiles('/d', '../../etc/x').certFile, '/d/internal/.._.._etc_x.pem');
    assert.deepEqual(acmeCertificateKeys('*.api.test'), { cert: 'acme/certificates/_.api.test.pem', key: 'acme/certificates/_.api.test.key' });
  });

  test('names one ACME account per directory and contact, the same every time', () => {
    const a = acmeAccountKeys('https://acme.test/dir', 'ops@example.test');
    assert.match(a.key, /^acme\/accounts\/[0-9a-f]{16}\/account\.key$/);
    assert.equal(a.url, a.key.replace(/account\.key$/, 'account.url'));
    assert.deepEqual(acmeAccountKeys('https://acme.test/dir', 'ops@example.test'), a);
    assert.notEqual(acmeAccountKeys('https://acme.test/dir', 'other@example.test').key, a.key);
    assert.notEqual(acmeAccountKeys('https://other.test/dir', 'ops@example.test').key, a.key);
  });

  test('resolves the dataDir against a base folder, ./.portcullis when none is configured', () => {
    assert.equal(defaultDataDir, './.portcullis');
    assert.equal(resolveDataDir('/etc/portcullis'), '/etc/portcullis/.portcullis');
    assert.equal(resolveDataDir('/etc/portcullis', 'state'), '/etc/portcullis/state');
    assert.equal(resolveDataDir('/etc/portcullis', '/var/lib/portcullis'), '/var/lib/portcullis');
  });

  test('is where the stores, the admin token, the CA and the memory state backend write, and where the readers look', async (t) => {
    const dir = tempDir(t);
    writeDenyList(dir, []);
    writeApiKeys(dir, []);
    const token = ensureAdminToken(dir);
    const store = await CaStore.open(dir);
    const keys = acmeCertificateKeys('api.test');
    await memoryState(dir).write(keys.cert, 'certificate');
    await memoryState(dir).write(keys.key, 'key', { secret: true });
    assert.ok(existsSync(denyListFile(dir)), 'deny list');
    assert.ok(existsSync(apiKeysFile(dir)), 'API keys');
    assert.equal(token.file, adminTokenFile(dir));
    assert.ok(existsSync(adminTokenFile(dir)), 'admin token');
    assert.equal(store.dir, caFolder(dir));
    assert.ok(readdirSync(caFolder(dir)).includes('ca.pem'), 'CA root');
    assert.ok(existsSync(acmeCertificateFiles(dir, 'api.test').certFile) && existsSync(acmeCertificateFiles(dir, 'api.test').keyFile), 'ACME certificate');
    assert.equal(stateValueFile(dir, keys.cert), acmeCertificateFiles(dir, 'api.test').certFile);
    // the summaries: one file per process, merged by the readers
    const entry = { fingerprint: 'sha256:aa', subject: 'CN=a', issuer: 'CN=ca', serial: '01', notAfter: null, firstSeen: '2026-01-01T00:00:00.000Z', lastSeen: new Date().toISOString(), count: 1, sites: [] };
    mkdirSync(inventoryFolder(dir));
    writeFileSync(inventoryFile(dir, 'worker-1'), JSON.stringify({ version: 1, entries: [entry] }));
    writeFileSync(inventoryFile(dir, 'worker-2'), JSON.stringify({ version: 1, entries: [{ ...entry, fingerprint: 'sha256:bb' }] }));
    assert.deepEqual(readInventory(dir).map((e) => e.fingerprint).sort(), ['sha256:aa', 'sha256:bb']);
  });

  test('is the same default for the quickstart, the strict load and the CLI', async (t) => {
    const dir = tempDir(t);
    const dataDir = resolveDataDir(dir);
    const qs = await quickstart(dir, '127.0.0.1:0');
    assert.equal(qs.config.dataDir, dataDir);
    assert.equal(qs.ca.certFile, join(caFolder(dataDir), 'ca.pem'));
    const { certFile, keyFile } = quickstartCertificateFiles(dataDir);
    assert.equal(qs.config.sites[0]!.certificates[0]!.certFile, certFile);
    const file = join(dir, 'portcullis.yaml');
    writeFileSync(file, `listen: { https: "127.0.0.1:8443" }\nsites:\n  - hosts: [localhost]\n    certificates: [{ cert: ${certFile}, key: ${keyFile} }]\n    routes: [{ path: /, upstream: "builtin:whoami" }]\n`);
    assert.equal(loadConfigFile(file).dataDir, dataDir);
    assert.equal(dataDirOf(file), dataDir);
    assert.equal(dataDirOf(undefined), resolveDataDir(process.cwd()));
  });
});
