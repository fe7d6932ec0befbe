import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { dataDirOf } from '../../src/cli/data-dir.js';
import { issueInternalCertificates, parseConfigText, readLeniently } from '../../src/config/index.js';
import type { PortcullisError } from '../../src/errors.js';
import { internalCertificateFiles, resolveDataDir } from '../../src/state/index.js';
import { tempDir } from '../helpers/proxy.js';

/** YAML with `n` copies of one anchored scalar: the anchor and n - 1 aliases. */
const copies = (n: number) => `dataDir: custom\nbase: &b x\nlist: [${Array(n - 1).fill('*b').join(', ')}]\n`;

describe('the lenient read of a config', () => {
  test('finds the dataDir relative to the config file, an absolute one as is', (t) => {
    const dir = tempDir(t);
    const file = join(dir, 'portcullis.yaml');
    assert.equal(readLeniently('dataDir: state\n', file).dataDir, join(dir, 'state'));
    assert.equal(readLeniently('dataDir: /var/lib/portcullis\n', file).dataDir, '/var/lib/portcullis');
  });

  test('reads anything it cannot use as absent: the default dataDir and no internal sites', (t) => {
    const file = join(tempDir(t), 'portcullis.yaml');
    const cases: [string, string][] = [
      ['an empty file', ''],
      ['YAML that does not parse', 'dataDir: [unclosed\n'],
      ['a duplicate key', 'dataDir: a\ndataDir: b\n'],
      ['an alias without an anchor', 'dataDir: *nowhere\n'],
      ['a list at the top', '- dataDir: state\n'],
      ['a scalar at the top', 'just text\n'],
      ['a dataDir that is not a string', 'dataDir: [state]\n'],
      ['two documents', 'dataDir: a\n---\ndataDir: b\n'],
      ['sites that are not a list', 'sites: { internal: true }\n'],
    ];
    for (const [what, text] of cases) assert.deepEqual(readLeniently(text, file), { dataDir: resolveDataDir(join(file, '..')), internalSites: [] }, what);
  });

  test('keeps the dataDir of a config the strict load refuses, so the CLI still reaches the instance', (t) => {
    const dir = tempDir(t);
    const text = 'dataDir: state\nsites: 7\nunknownKey: true\n';
    assert.throws(() => parseConfigText(text, join(dir, 'portcullis.yaml')), (err: PortcullisError) => err.code === 'PCL_CONFIG_INVALID');
    assert.equal(readLeniently(text, join(dir, 'portcullis.yaml')).dataDir, join(dir, 'state'));
  });

  test('bounds aliases as the strict load does: 50 copies are read, 51 are refused by both', (t) => {
    const file = join(tempDir(t), 'portcullis.yaml');
    assert.equal(readLeniently(copies(50), file).dataDir, join(file, '..', 'custom'));
    assert.equal(readLeniently(copies(51), file).dataDir, resolveDataDir(join(file, '..')));
    assert.throws(() => parseConfigText(copies(51), file), (err: PortcullisError) => err.code === 'PCL_CONFIG_YAML' && /more than 50 copies/.test(err.message));
  });

  test('lists the sites with an internal certificate and string hosts, hosts in lower case, in the config order', (t) => {
    const file = join(tempDir(t), 'portcullis.yaml');
    const text = `sites:
  - hosts: [API.test, "*.Svc.test"]
    certificates: [{ cert: a.pem, key: a.key }, { internal: true }]
  - hosts: [files.test]
    certificates: [{ cert: a.pem, key: a.key }]
  - hosts: []
    certificates: [{ internal: true }]
  - hosts: [ok.test, 7]
    certificates: [{ internal: true }]
  - hosts: [other.test]
    certificates: [{ internal: "yes" }]
  - hosts: other.test
    certificates: [{ internal: true }]
  - [not, a, site]
  - null
  - hosts: [b.test]
    certificates: [null, { internal: true }]
`;
    assert.deepEqual(readLeniently(text, file).internalSites, [{ hosts: ['api.test', '*.svc.test'] }, { hosts: ['b.test'] }]);
  });
});

describe('the readers of the dataDir', () => {
  test('the CLI finds the dataDir a config file names, and the default next to a file it cannot read', (t) => {
    const dir = tempDir(t);
    const file = join(dir, 'portcullis.yaml');
    writeFileSync(file, 'dataDir: ./state\nsites: broken\n');
    assert.equal(dataDirOf(file), join(dir, 'state'));
    assert.equal(dataDirOf(join(dir, 'missing.yaml')), join(dir, '.portcullis'));
  });

  test('internal certificates are issued under the dataDir the config names, for the sites that ask, and not again while they are good', async (t) => {
    const dir = tempDir(t);
    const file = join(dir, 'portcullis.yaml');
    const text = `dataDir: state
sites:
  - hosts: [API.test, www.api.test]
    certificates: [{ internal: true }]
  - hosts: [files.test]
    certificates: [{ cert: a.pem, key: a.key }]
`;
    writeFileSync(file, text);
    const files = internalCertificateFiles(join(dir, 'state'), 'api.test');
    assert.deepEqual(await issueInternalCertificates(text, file), [files.certFile]);
    assert.ok(existsSync(files.keyFile));
    assert.ok(existsSync(join(dir, 'state', 'ca', 'ca.pem')), 'the built-in CA of that dataDir');
    assert.ok(!existsSync(internalCertificateFiles(join(dir, 'state'), 'files.test').certFile));
    const first = readFileSync(files.certFile, 'utf8');
    assert.deepEqual(await issueInternalCertificates(text, file), []);
    assert.equal(readFileSync(files.certFile, 'utf8'), first);
  });

  test('a config that does not parse issues nothing and creates no CA', async (t) => {
    const dir = tempDir(t);
    assert.deepEqual(await issueInternalCertificates('sites: [unclosed\n', join(dir, 'portcullis.yaml')), []);
    assert.ok(!existsSync(join(dir, '.portcullis')));
  });
});
