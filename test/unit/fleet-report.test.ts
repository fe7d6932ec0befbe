import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { formatFleet } from '../../src/cli/fleet-table.js';
import { configDigest, type Config } from '../../src/config/index.js';
import { compareFleet, fleetSchema, type InstanceRecord, type ServedCertificate } from '../../src/state/index.js';

const cert = (site: string, serial: string): ServedCertificate => ({ site, serial, notAfter: '2030-01-01T00:00:00.000Z', key: 'ECDSA P-256' });

function record(id: string, configDigest: string, certificates: ServedCertificate[], configAppliedAt = '2025-01-01T00:00:00.000Z'): InstanceRecord {
  return {
    schema: fleetSchema,
    id,
    hostname: id,
    pid: 1,
    version: '0.1.0',
    node: 'v24.0.0',
    cluster: 'c',
    startedAt: '2025-01-01T00:00:00.000Z',
    uptimeSeconds: 90,
    heartbeatAt: '2025-01-01T00:01:30.000Z',
    generation: 1,
    configDigest,
    configAppliedAt,
    lastReload: null,
    certificates,
    listeners: { https: '10.0.0.1:443', http: null, admin: null },
    workers: null,
  };
}

const kinds = (r: ReturnType<typeof compareFleet>) => Object.fromEntries(r.instances.map((e) => [e.record.id, e.flags.map((f) => f.kind)]));

describe('comparing a fleet', () => {
  test('instances serving the same config and certificates agree, in any order of certificates', () => {
    const report = compareFleet({
      instances: [record('a', 'sha256:1', [cert('api', '01'), cert('api', '02')]), record('b', 'sha256:1', [cert('api', '02'), cert('api', '01')])],
      unreadable: [],
    });
    assert.equal(report.agreed, true);
    assert.deepEqual(kinds(report), { a: [], b: [] });
    assert.deepEqual(report.reference, { configDigest: 'sha256:1', certificates: { api: ['01', '02'] } });
  });

  test('the instance that differs from the majority is flagged, with what it serves and what most serve', () => {
    const report = compareFleet({
      instances: [record('a', 'sha256:1', [cert('api', '01')]), record('b', 'sha256:1', [cert('api', '01')]), record('c', 'sha256:2', [cert('api', '09'), cert('web', '03')])],
      unreadable: [],
    });
    assert.equal(report.agreed, false);
    assert.deepEqual(kinds(report), { a: [], b: [], c: ['config', 'certificates'] });
    const flags = report.instances[2]?.flags ?? [];
    assert.equal(flags[0]?.detail, 'serves config sha256:2 (generation 1) where 2 instance(s) serve sha256:1');
    assert.deepEqual(flags[1]?.kind === 'certificates' && flags[1].sites, ['api', 'web']);
    assert.equal(flags[1]?.detail, 'api serves 09 where 2 instance(s) serve 01; web serves 03 where 2 instance(s) serve no certificate');
  });

  test('on a tie the reference is what the instance that accepted its config last serves', () => {
    const report = compareFleet({
      instances: [record('old', 'sha256:old', [cert('api', '01')], '2025-01-01T00:00:00.000Z'), record('new', 'sha256:new', [cert('api', '02')], '2025-02-01T00:00:00.000Z')],
      unreadable: [],
    });
    assert.equal(report.reference?.configDigest, 'sha256:new');
    assert.deepEqual(kinds(report), { old: ['config', 'certificates'], new: [] });
  });

  test('a site waiting for its certificate differs from one serving it', () => {
    const report = compareFleet({ instances: [record('a', 'sha256:1', [cert('api', '01')]), record('b', 'sha256:1', [cert('api', '01')]), record('c', 'sha256:1', [])], unreadable: [] });
    assert.deepEqual(kinds(report), { a: [], b: [], c: ['certificates'] });
    assert.equal(report.instances[2]?.flags[0]?.detail, 'api serves no certificate where 2 instance(s) serve 01');
  });

  test('an empty fleet, or one with records that cannot be read, does not agree', () => {
    assert.equal(compareFleet({ instances: [], unreadable: [] }).agreed, false);
    const partly = compareFleet({ instances: [record('a', 'sha256:1', [])], unreadable: ['x'] });
    assert.equal(partly.agreed, false);
    assert.deepEqual(kinds(partly), { a: [] });
  });

  test('the table marks the flagged instance, says why and ends with the verdict', () => {
    const report = compareFleet({
      instances: [record('a', 'sha256:aaaaaaaaaaaaaaaa', [cert('api', '01')]), record('b', 'sha256:aaaaaaaaaaaaaaaa', [cert('api', '01')]), record('c', 'sha256:bbbbbbbbbbbbbbbb', [cert('api', '01')])],
      unreadable: [],
    });
    const text = formatFleet(report, 'c', 'redis://r:6379/0');
    const lines = text.split('\n');
    assert.match(lines[0] as string, /INSTANCE +VERSION +NODE +GEN +CONFIG +CERTIFICATES +LAST RELOAD +UP +HTTPS +FLAGS/);
    assert.match(lines[3] as string, /^! +c +0\.1\.0 +v24\.0\.0 +1 +bbbbbbbbbbbb +1 \([0-9a-f]{8}\) +none +90s +10\.0\.0\.1:443 +config$/);
    assert.ok(text.includes('! c: serves config sha256:bbbbbbbbbbbbbbbb (generation 1) where 2 instance(s) serve sha256:aaaaaaaaaaaaaaaa'));
    assert.match(text, /1 of 3 instance\(s\) of cluster "c" differ from what most serve \(config aaaaaaaaaaaa\): marked !\n$/);
    assert.equal(formatFleet(compareFleet({ instances: [], unreadable: [] }), 'c', 'redis://r:6379/0'), 'no instance of cluster "c" is registered in redis://r:6379/0\n');
  });
});

describe('the config digest', () => {
  const config = {} as Config;
  const base = `listen: { https: "0.0.0.0:443" }\nsites:\n  - hosts: [api.test]\n    routes: [{ path: /, upstream: "builtin:whoami" }]\n`;

  test('ignores comments, key order and formatting, and the keys each instance has its own', () => {
    const same = [
      `# the api\nsites: [{ routes: [{ upstream: "builtin:whoami", path: / }], hosts: [api.test] }]\nlisten: { https: "0.0.0.0:443" }\n`,
      `${base.replace('0.0.0.0:443', '10.0.0.5:8443')}dataDir: /var/lib/portcullis-2\n`,
      base.replace('listen: { https: "0.0.0.0:443" }', 'listen: { https: "0.0.0.0:443", http: "0.0.0.0:80", admin: "127.0.0.1:9443" }'),
    ];
    for (const text of same) assert.equal(configDigest(text, config), configDigest(base, config), text);
    assert.match(configDigest(base, config), /^sha256:[0-9a-f]{64}$/);
  });

  test('changes with anything the fleet shares: a route, a listen key that is not an address', () => {
    const different = [base.replace('path: /', 'path: /v2'), base.replace('listen: { https: "0.0.0.0:443" }', 'listen: { https: "0.0.0.0:443", proxyProtocol: [10.0.0.0/8] }'), `${base}workers: 2\n`];
    for (const text of different) assert.notEqual(configDigest(text, config), configDigest(base, config), text);
  });
});
