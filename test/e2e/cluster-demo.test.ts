import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { curl, run } from '../helpers/clients.js';
import { freePort } from '../helpers/pebble.js';
import { whenever } from '../helpers/wait.js';

/*
 * scripts/cluster-demo.sh, as a user runs it: Redis, three instances and
 * HAProxy on this machine. Its children run on this test's Node (NODE), so
 * the Node 24 run tests Node 24.
 */
const script = join(import.meta.dirname, '..', '..', 'scripts', 'cluster-demo.sh');
const env = { ...process.env, NODE: process.execPath };

/** Whether a process with this pid still exists. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('the cluster demo script', () => {
  test('--check starts the topology, answers through HAProxy, lists the fleet, and stops every process it started', async () => {
    const r = await run('bash', [script, '--check'], '', 240_000, env);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /cluster-demo: answered through HAProxy on 127\.0\.0\.1:\d+/);
    const answer = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'), r.stdout.indexOf('\n}\n') + 2)) as { site: string; tls: { sni: string }; client: { address: string } };
    assert.equal(answer.site, 'localhost');
    assert.equal(answer.tls.sni, 'localhost');
    // with the PROXY protocol Portcullis sees curl (127.0.0.1), without it HAProxy's side (127.0.0.2)
    assert.equal(answer.client.address, r.stdout.includes('(PROXY protocol v2') ? '127.0.0.1' : '127.0.0.2');
    assert.match(r.stdout, /3 instance\(s\) of cluster "demo" serve config [0-9a-f]{12} and the same certificates/);
    assert.match(r.stdout, /cluster-demo: check passed/);
    const pids = (/pids redis (\d+), instances (\d+) (\d+) (\d+), haproxy (\d+)/.exec(r.stdout) ?? []).slice(1).map(Number);
    assert.equal(pids.length, 5);
    assert.deepEqual(pids.filter(alive), [], 'nothing left running');
  });

  test('serving until Ctrl-C: the printed curl works, and SIGINT stops everything and removes the folder', async () => {
    const port = await freePort();
    const child = spawn('bash', [script, '--port', String(port)], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = once(child, 'exit');
    try {
      const banner = whenever(child.stdout, 'data', () => (out.includes('Ctrl-C stops everything.') ? true : undefined), { what: 'the demo banner', timeoutMs: 180_000 });
      await Promise.race([banner, exited.then(([code]) => Promise.reject(new Error(`the demo exited (${String(code)}) before its banner`)))]);
    } catch (err) {
      child.kill('SIGINT');
      await exited;
      throw new Error(`${(err as Error).message}\n${out}`);
    }
    const folder = (/files in (\S+)\):/.exec(out) as RegExpExecArray)[1] as string;
    const command = (/curl --cacert (\S+) (https:\/\/localhost:\d+\/)/.exec(out) as RegExpExecArray).slice(1) as [string, string];
    assert.equal(command[1], `https://localhost:${port}/`);
    const answer = await curl(['-sS', '--fail', '--cacert', command[0], command[1]]);
    assert.equal(answer.code, 0, answer.stderr);
    assert.equal((JSON.parse(answer.stdout) as { site: string }).site, 'localhost');
    const pids = [...(/\(pid (\d+)\), user/.exec(out) ?? []).slice(1), ...(/\(pids (\d+) (\d+) (\d+)\)/.exec(out) ?? []).slice(1), ...(/\(pid (\d+)\), TCP mode/.exec(out) ?? []).slice(1)].map(Number);
    assert.equal(pids.length, 5, out);

    child.kill('SIGINT');
    const [code] = (await exited) as [number | null];
    assert.equal(code, 130);
    assert.deepEqual(pids.filter(alive), [], 'nothing left running');
    assert.equal(existsSync(folder), false, 'the temp folder is gone');
  });
});
