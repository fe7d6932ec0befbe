import assert from 'node:assert/strict';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { curl, resolveTo, sClientRequest } from '../helpers/clients.js';
import { runCli, startCli } from '../helpers/cli-process.js';
import { TestPki } from '../helpers/pki.js';
import { tempDir } from '../helpers/proxy.js';

const pki = new TestPki();
after(() => pki.cleanup());

interface Who {
  pid: number;
  route: string;
}

/** A two-worker config; `key` and `extraRoutes` vary per test. */
function clusterConfig(cert: string, key: string, extraRoutes = ''): string {
  return `listen: { https: "127.0.0.1:0" }
workers: 2
log: { access: off }
timeouts: { drain: 5s }
sites:
  - hosts: [api.test]
    certificates: [{ cert: ${cert}, key: ${key} }]
    routes: [{ path: /, upstream: "builtin:whoami" }${extraRoutes}]
`;
}

describe('workers', () => {
  test('share ticket keys, survive a crash, and all take a reload', async (t) => {
    const root = pki.root('workers-root');
    const leaf = pki.leaf('api', root, { dns: ['api.test'] });
    const dir = tempDir(t);
    const file = join(dir, 'portcullis.yaml');
    writeFileSync(file, clusterConfig(leaf.chainFile, leaf.keyFile));
    const cli = startCli(t, ['start', '--config', file], dir);
    const port = Number((await cli.waitFor(/"https":"127\.0\.0\.1:(\d+)".*"workers":2/))[1]);
    const who = async (path = '/'): Promise<Who> => {
      const r = await curl([...resolveTo('api.test', port), '--cacert', root.certFile, `https://api.test:${port}${path}`]);
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout) as Who;
    };
    const pidsOf = async (n: number, path = '/') => {
      const answers: Who[] = [];
      for (let i = 0; i < n; i++) answers.push(await who(path));
      return answers;
    };

    const first = await pidsOf(6);
    assert.equal(new Set(first.map((w) => w.pid)).size, 2, 'connections reach both workers');

    // A session made with one worker resumes on the other.
    const session = join(dir, 'session.pem');
    const made = await sClientRequest(port, 'api.test', ['-CAfile', root.certFile, '-sess_out', session]);
    const madeBy = Number(/"pid": (\d+)/.exec(made.stdout)?.[1]);
    let resumedElsewhere = false;
    for (let i = 0; i < 8 && !resumedElsewhere; i++) {
      const again = await sClientRequest(port, 'api.test', ['-CAfile', root.certFile, '-sess_in', session]);
      const by = Number(/"pid": (\d+)/.exec(again.stdout)?.[1]);
      if (by !== madeBy) {
        assert.equal(again.reused, true, 'the other worker resumed the session');
        resumedElsewhere = true;
      }
    }
    assert.ok(resumedElsewhere, 'a resumption landed on the other worker');

    // A crashed worker is logged and replaced; service goes on.
    const victim = first[0]!.pid;
    process.kill(victim, 'SIGKILL');
    await cli.waitFor(new RegExp(`"event":"worker_exited".*"workerPid":${victim}[^\\n]*\\n(.*\\n)*.*"event":"worker_ready"`));
    const afterCrash = await pidsOf(6);
    assert.ok(afterCrash.every((w) => w.pid !== victim));
    assert.equal(new Set(afterCrash.map((w) => w.pid)).size, 2, 'a replacement worker serves');

    // A reload reaches every worker.
    writeFileSync(file, clusterConfig(leaf.chainFile, leaf.keyFile, ', { path: /new/, upstream: "builtin:whoami" }'));
    cli.child.kill('SIGHUP');
    await cli.waitFor(new RegExp(`"pid":${cli.pid},[^\\n]*"event":"reloaded"`));
    const reloaded = await pidsOf(6, '/new/x');
    assert.ok(reloaded.every((w) => w.route === '/new/'));
    assert.equal(new Set(reloaded.map((w) => w.pid)).size, 2);

    cli.child.kill('SIGTERM');
    const [code] = (await once(cli.child, 'exit')) as [number];
    assert.equal(code, 0);
  });

  test('a refused reload leaves every worker on the previous config, and a replacement worker starts on it too', async (t) => {
    const root = pki.root('workers-refused-root');
    const leaf = pki.leaf('api', root, { dns: ['api.test'] });
    const wrongKey = pki.leaf('other', root, { dns: ['api.test'], key: 'rsa' });
    const dir = tempDir(t);
    const file = join(dir, 'portcullis.yaml');
    writeFileSync(file, clusterConfig(leaf.chainFile, leaf.keyFile));
    const cli = startCli(t, ['start', '--config', file], dir);
    const port = Number((await cli.waitFor(/"https":"127\.0\.0\.1:(\d+)".*"workers":2/))[1]);
    const who = async (): Promise<Who> => {
      const r = await curl([...resolveTo('api.test', port), '--cacert', root.certFile, `https://api.test:${port}/`]);
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout) as Who;
    };

    writeFileSync(file, clusterConfig(leaf.chainFile, wrongKey.keyFile));
    const refused = await runCli(['reload', '--config', file]);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /key does not match certificate/);
    const before = new Set([(await who()).pid, (await who()).pid]);
    assert.equal(before.size, 2, 'both workers still serve');

    const victim = [...before][0]!;
    process.kill(victim, 'SIGKILL');
    await cli.waitFor(new RegExp(`"event":"worker_exited".*"workerPid":${victim}[^\\n]*\\n(.*\\n)*.*"event":"worker_ready"`));
    const after = new Set<number>();
    for (let i = 0; i < 6; i++) after.add((await who()).pid);
    assert.equal(after.size, 2, 'the replacement serves the last accepted config, not the broken file');
    assert.ok(!after.has(victim));
  });
});

