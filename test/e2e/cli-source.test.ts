import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { linesOf, startInstance } from '../helpers/cli-logs.js';
import { cliMain, tsxImport } from '../helpers/cli-process.js';
import { curl, resolveTo } from '../helpers/clients.js';
import { TestPki } from '../helpers/pki.js';
import { tempDir } from '../helpers/proxy.js';

/**
 * The CLI tests run what src/ says now, not a dist/ build: the helper starts
 * src/cli/main.ts through tsx, and the cluster workers the primary forks
 * inherit that (cluster.fork() reuses the primary's execArgv and main
 * module). Read from each running process's own command line.
 */

const pki = new TestPki();
after(() => pki.cleanup());

/** The arguments a running process was started with (Linux). */
const commandLine = (pid: number): string[] => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').slice(0, -1);

test('the CLI the tests start, and each worker it forks with workers: 2, runs src/cli/main.ts through tsx, never bin/ or dist/', { skip: !existsSync('/proc/self/cmdline') && 'reads /proc/PID/cmdline' }, async (t) => {
  const root = pki.root('cli-source-root');
  const leaf = pki.leaf('cli-source-api', root, { dns: ['api.test'] });
  const dir = tempDir(t);
  const file = join(dir, 'portcullis.yaml');
  writeFileSync(
    file,
    `listen: { https: "127.0.0.1:0" }
log: { access: off }
workers: 2
sites:
  - hosts: [api.test]
    certificates: [{ cert: ${leaf.chainFile}, key: ${leaf.keyFile} }]
    routes: [{ path: /, upstream: "builtin:whoami" }]
`,
  );
  const { cli, port } = await startInstance(t, dir, file);
  const workers = linesOf(cli)
    .filter((l) => l.event === 'worker_ready')
    .map((l) => Number(l.workerPid));
  t.after(() => {
    for (const pid of workers) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone with the primary
      }
    }
  });
  assert.equal(workers.length, 2, cli.stderr);

  for (const [role, pid] of [['primary', cli.pid], ...workers.map((w) => ['worker', w] as const)] as const) {
    const argv = commandLine(pid);
    assert.deepEqual(argv.slice(1, 2 + tsxImport.length), [...tsxImport, cliMain], `the ${role} (pid ${pid}) runs: ${argv.join(' ')}`);
    assert.deepEqual(argv.slice(2 + tsxImport.length), ['start', '--config', file], `the ${role} (pid ${pid}) runs: ${argv.join(' ')}`);
  }

  // and the workers started that way serve
  const who = await curl([...resolveTo('api.test', port), '--cacert', root.certFile, `https://api.test:${port}/`]);
  assert.ok(workers.includes((JSON.parse(who.stdout) as { pid: number }).pid), who.stdout);
});
