import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import YAML from 'yaml';
import { parseConfigText } from '../../src/config/index.js';
import { run } from '../helpers/clients.js';
import { TestPki } from '../helpers/pki.js';
import { tempDir } from '../helpers/proxy.js';

/* The files under deploy/ that docs/cluster.md points users at: each checked by the tool that runs it, where it is installed here, and against each other. */

const deploy = join(import.meta.dirname, '..', '..', 'deploy');
const pki = new TestPki();
after(() => pki.cleanup());

type Doc = { kind: string; metadata: { name: string }; [key: string]: unknown };
// the manifests' shapes are Kubernetes', read field by field here: typing them would only restate them
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Loose = any;

function manifests(): Doc[] {
  const dir = join(deploy, 'kubernetes');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .flatMap((f) => YAML.parseAllDocuments(readFileSync(join(dir, f), 'utf8')).map((d) => {
      assert.deepEqual(d.errors, [], f);
      return d.toJS() as Doc;
    }));
}

const byKind = (docs: Doc[], kind: string): Loose => {
  const found = docs.filter((d) => d.kind === kind);
  assert.equal(found.length, 1, `one ${kind}`);
  return found[0];
};

describe('deploy/', () => {
  test('haproxy.cfg is valid for HAProxy, in TCP mode, and sends and checks with the PROXY protocol v2', async () => {
    const r = await run('haproxy', ['-c', '-f', join(deploy, 'haproxy.cfg')]);
    assert.equal(r.code, 0, `${r.stdout}${r.stderr}`);
    const text = readFileSync(join(deploy, 'haproxy.cfg'), 'utf8');
    assert.match(text, /^\s+mode tcp$/m);
    const defaults = text.split('\n').filter((l) => /^\s+default-server /.test(l));
    assert.equal(defaults.length, 2);
    for (const line of defaults) assert.match(line, /\bcheck\b.*\bsend-proxy-v2\b.*\bcheck-send-proxy\b/);
  });

  test('the systemd unit passes systemd-analyze verify and keeps its hardening', async () => {
    const unit = join(deploy, 'systemd', 'portcullis.service');
    const text = readFileSync(unit, 'utf8');
    for (const line of ['NoNewPrivileges=yes', 'ProtectSystem=strict', 'ReadWritePaths=/var/lib/portcullis', 'AmbientCapabilities=CAP_NET_BIND_SERVICE', 'CapabilityBoundingSet=CAP_NET_BIND_SERVICE', 'PrivateTmp=yes', 'ProtectHome=yes', 'ExecReload=/bin/kill -HUP $MAINPID']) {
      assert.ok(text.split('\n').includes(line), line);
    }
    assert.ok(!/^MemoryDenyWriteExecute=yes/m.test(text), 'V8 needs W+X pages');
    const r = await run('systemd-analyze', ['verify', unit]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr.trim(), '', 'no warning');
  });

  test('the Kubernetes manifests fit together: 3 replicas, the Service, probes and mounts match the config', () => {
    const docs = manifests();
    assert.deepEqual(docs.map((d) => d.kind).sort(), ['ConfigMap', 'Deployment', 'PodDisruptionBudget', 'Secret', 'Service']);
    const deployment = byKind(docs, 'Deployment');
    const service = byKind(docs, 'Service');
    const secret = byKind(docs, 'Secret');
    const config = YAML.parse(byKind(docs, 'ConfigMap').data['portcullis.yaml']);
    const spec = deployment.spec;
    assert.equal(spec.replicas, 3);
    assert.deepEqual(spec.selector.matchLabels, spec.template.metadata.labels);
    assert.deepEqual(service.spec.selector, spec.template.metadata.labels);
    const container = spec.template.spec.containers[0];
    const ports = Object.fromEntries(container.ports.map((p: Loose) => [p.name, p.containerPort]));
    assert.deepEqual(ports, { https: Number(config.listen.https.split(':')[1]), http: Number(config.listen.http.split(':')[1]), admin: Number(config.listen.admin.split(':')[1]) });
    for (const p of service.spec.ports) assert.ok(p.targetPort in ports, p.targetPort);
    for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) assert.deepEqual(container[probe].tcpSocket, { port: 'https' }, probe);
    assert.ok(spec.template.spec.terminationGracePeriodSeconds > Number(config.timeouts.drain.replace('s', '')), 'the drain ends before the kill');
    // every file the config names is on a mount, and the Secret has the password and CA it reads
    const mounts: Loose[] = container.volumeMounts;
    const volumes = Object.fromEntries(spec.template.spec.volumes.map((v: Loose) => [v.name, v]));
    const mountOf = (path: string) => mounts.find((m) => path === m.mountPath || path.startsWith(`${m.mountPath}/`));
    const site = config.sites[0].certificates[0];
    for (const path of [site.cert, site.key, config.state.passwordFile, config.state.ca, config.dataDir, '/etc/portcullis/portcullis.yaml']) assert.ok(mountOf(path), path);
    assert.equal(volumes[mountOf(config.state.passwordFile).name].secret.secretName, secret.metadata.name);
    assert.ok(config.state.passwordFile.endsWith(`/${Object.keys(secret.stringData)[0]}`) && config.state.ca.endsWith('/ca.crt') && 'ca.crt' in secret.stringData);
    assert.equal(volumes[mountOf(config.dataDir).name].emptyDir !== undefined, true, 'each pod its own dataDir');
    assert.equal(config.state.backend, 'redis');
    assert.deepEqual(container.command.slice(-2), ['--config', '/etc/portcullis/portcullis.yaml']);
  });

  test('the ConfigMap\'s portcullis.yaml passes the real loader once its files exist', (t) => {
    const dir = tempDir(t);
    const docs = manifests();
    let text: string = byKind(docs, 'ConfigMap').data['portcullis.yaml'];
    const leaf = pki.leaf('deploy-api', pki.root('deploy-root'), { dns: ['api.example.com'] });
    mkdirSync(join(dir, 'redis'));
    writeFileSync(join(dir, 'redis', 'password'), 'secret\n');
    writeFileSync(join(dir, 'redis', 'ca.crt'), readFileSync(leaf.certFile));
    text = text
      .replaceAll('/etc/portcullis/tls/tls.crt', leaf.chainFile)
      .replaceAll('/etc/portcullis/tls/tls.key', leaf.keyFile)
      .replaceAll('/run/secrets/portcullis-redis', join(dir, 'redis'))
      .replaceAll('/var/lib/portcullis', join(dir, 'data'));
    const config = parseConfigText(text, join(dir, 'portcullis.yaml'));
    assert.equal(config.state.backend, 'redis');
    assert.equal(config.state.backend === 'redis' && config.state.redis.password, 'secret');
    assert.equal(config.sites.length, 1);
  });
});
