import assert from 'node:assert/strict';
import cluster from 'node:cluster';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { noChallenges } from '../../src/acme/index.js';
import { parseConfigText } from '../../src/config/index.js';
import { createLogger } from '../../src/observe/index.js';
import type { DataPlane } from '../../src/supervisor/data-plane.js';
import { startWorkerFleet } from '../../src/supervisor/worker-fleet.js';
import { denyEntry, type DenyEntry } from '../../src/trust/index.js';
import { curl, resolveTo } from '../helpers/clients.js';
import { TestPki } from '../helpers/pki.js';
import { suiteScope, tempDir } from '../helpers/proxy.js';

/**
 * The worker protocol without the CLI: a fleet of two real cluster workers
 * (test/helpers/fleet-worker.ts) asked everything the control plane asks,
 * each request confirmed by every worker in the generic Ask/Answer shape.
 */
describe('a worker fleet', () => {
  const pki = new TestPki();
  const scope = suiteScope();
  const root = pki.root('fleet-root');
  const leaf = pki.leaf('api', root, { dns: ['api.test'] });
  const dir = tempDir(scope);
  const file = join(dir, 'portcullis.yaml');
  const configText = (route: string) => `listen: { https: "127.0.0.1:0" }
workers: 2
log: { access: off }
timeouts: { drain: 2s }
sites:
  - hosts: [api.test]
    certificates: [{ cert: ${leaf.chainFile}, key: ${leaf.keyFile} }]
    routes: [{ path: ${route}, upstream: "builtin:whoami" }]
`;
  let plane: DataPlane;
  const get = (path: string) => curl([...resolveTo('api.test', plane.listening.port), '--cacert', root.certFile, '-s', '-o', '/dev/null', '-w', '%{http_code}', `https://api.test:${plane.listening.port}${path}`]);

  before(async () => {
    const text = configText('/one/');
    writeFileSync(file, text);
    process.env.PCL_FLEET_CONFIG = file;
    cluster.setupPrimary({ exec: join(import.meta.dirname, '../helpers/fleet-worker.ts'), execArgv: ['--import', 'tsx'], silent: false });
    plane = await startWorkerFleet({ config: parseConfigText(text, file), text, generation: 1 }, { denyList: [], apiKeys: [], challenges: noChallenges }, createLogger('silent'));
  });
  after(async () => {
    await plane?.close();
    pki.cleanup();
  });

  test('serves with both workers and says so', async () => {
    assert.equal(plane.listening.workers, 2);
    assert.equal((await get('/one/x')).stdout, '200');
  });

  test('a deny list, API keys and a flush are confirmed by every worker', async () => {
    const entry = denyEntry({ fingerprint: `sha256:${'AB'.repeat(32)}` }, 'test', new Date()) as DenyEntry;
    assert.deepEqual(await plane.setDenyList([entry]), { processes: 2, closed: 0 });
    assert.deepEqual(await plane.setApiKeys([]), { processes: 2 });
    assert.deepEqual(await plane.flush(), { processes: 2 });
  });

  test('metrics come from every worker, each with its own process metrics', async () => {
    const registries = await plane.metrics();
    assert.equal(registries.length, 2);
    for (const r of registries) {
      const names = r.map((m) => m.name);
      assert.ok(names.includes('portcullis_connections_refused_total'), names.join(' '));
      assert.ok(names.includes('process_cpu_user_seconds_total'), names.join(' '));
    }
  });

  test('a config every worker refuses is refused with each worker\'s reason, and the old one keeps serving', async () => {
    const bad = configText('/two/').replace('builtin:whoami', 'builtin:nonsense');
    await assert.rejects(plane.apply({ config: parseConfigText(configText('/two/'), file), text: bad, generation: 2 }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'PCL_RELOAD_FAILED');
      assert.match(err.message, /worker \d+: .*builtin:nonsense.*; worker \d+: .*builtin:nonsense/s);
      return true;
    });
    assert.equal((await get('/one/x')).stdout, '200');
  });

  test('a new config applied by every worker serves at once', async () => {
    const text = configText('/two/');
    await plane.apply({ config: parseConfigText(text, file), text, generation: 2 });
    for (let i = 0; i < 4; i++) {
      assert.equal((await get('/two/x')).stdout, '200');
      assert.equal((await get('/one/x')).stdout, '404');
    }
  });

  test('drain ends every worker', async () => {
    const exited = new Promise<number>((resolve) => {
      let n = 0;
      cluster.on('exit', () => ++n === 2 && resolve(n));
    });
    await plane.drain(2000);
    assert.equal(await exited, 2);
    assert.equal(Object.keys(cluster.workers ?? {}).length, 0);
  });
});
