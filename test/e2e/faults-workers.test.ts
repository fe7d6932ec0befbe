import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect as h2connect, type ClientHttp2Session } from 'node:http2';
import { get as httpsGet } from 'node:https';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { sClientRequest } from '../helpers/clients.js';
import { linesOf, nextLine, startInstance } from '../helpers/cli-logs.js';
import type { CliProcess } from '../helpers/cli-process.js';
import { TestPki, type Leaf } from '../helpers/pki.js';
import { tempDir, type Scope } from '../helpers/proxy.js';

/**
 * A worker of a two-worker instance killed with SIGKILL while clients keep
 * it busy with keep-alive and new connections: what fails, what goes on,
 * and what the primary does.
 */

const pki = new TestPki();
after(() => pki.cleanup());

/** One request's outcome in the load below. */
interface Outcome {
  readonly connection: string;
  readonly startedAt: number;
  readonly endedAt: number;
  /** The worker that answered, when one did. */
  readonly pid: number | null;
  /** Why it failed (an error code), when it did. */
  readonly error: string | null;
}

const errorCode = (err: unknown) => (err as NodeJS.ErrnoException).code ?? (err as Error).message;

/** The pid builtin:whoami reports in `body`; rejects a cut or empty body rather than throwing from an event handler. */
function settleWithPid(body: string, resolve: (pid: number) => void, reject: (err: Error) => void): void {
  try {
    resolve((JSON.parse(body) as { pid: number }).pid);
  } catch {
    reject(Object.assign(new Error(`not a whoami answer: ${JSON.stringify(body.slice(0, 80))}`), { code: 'BAD_ANSWER' }));
  }
}

/** Starts a two-worker instance of `leaf`; every worker it ever starts is killed by pid after the test, whatever happens (the primary is killed by startCli). */
async function startCluster(t: Scope, leaf: Leaf): Promise<{ cli: CliProcess; port: number; workers: number[]; dir: string }> {
  const dir = tempDir(t);
  const file = join(dir, 'portcullis.yaml');
  writeFileSync(
    file,
    `listen: { https: "127.0.0.1:0" }
log: { access: off }
workers: 2
timeouts: { drain: 2s }
sites:
  - hosts: [api.test]
    certificates: [{ cert: ${leaf.chainFile}, key: ${leaf.keyFile} }]
    routes: [{ path: /, upstream: "builtin:whoami" }]
`,
  );
  const { cli, port } = await startInstance(t, dir, file);
  t.after(() => {
    for (const line of linesOf(cli)) {
      if (line.event !== 'worker_ready') continue;
      try {
        process.kill(Number(line.workerPid), 'SIGKILL');
      } catch {
        // already gone
      }
    }
  });
  const workers = linesOf(cli)
    .filter((l) => l.event === 'worker_ready')
    .map((l) => Number(l.workerPid));
  assert.equal(workers.length, 2, cli.stderr);
  return { cli, port, workers, dir };
}

describe('kill -9 of a worker', () => {
  // Known defect, kept visible until the cluster hands connections over itself (the architecture issue): with
  // Node's round-robin scheduling the primary accepts and passes each connection to a worker, and one passed
  // to a worker as it dies stays open in the primary, unread, until the client gives up (about one per kill).
  // The kernel's own scheduling (SCHED_NONE) fixes it but sends every connection of a light load to one worker.
  test('connections accepted while a worker dies are served by another worker or reset, never left hanging', { todo: 'Node cluster round robin keeps a connection handed to a dying worker open in the primary' }, async (t) => {
    const root = pki.root('faults-burst-root');
    const leaf = pki.leaf('faults-burst-api', root, { dns: ['api.test'] });
    const { cli, port, workers } = await startCluster(t, leaf);
    const ca = readFileSync(root.certFile);

    // a stream of new connections, each one TLS handshake, from 16 parallel loops
    interface Attempt {
      readonly socket: TLSSocket;
      state: 'pending' | 'served' | 'reset';
      readonly settled: Promise<void>;
    }
    const attempts: Attempt[] = [];
    let running = true;
    const attempt = (): Attempt => {
      const socket = tlsConnect({ port, host: '127.0.0.1', servername: 'api.test', ca, ALPNProtocols: ['http/1.1'] });
      const a: Attempt = {
        socket,
        state: 'pending',
        settled: new Promise<void>((resolve) => {
          socket.once('secureConnect', () => {
            a.state = 'served';
            socket.destroy();
            resolve();
          });
          const reset = () => {
            if (a.state === 'pending') a.state = 'reset';
            resolve();
          };
          socket.once('error', reset);
          socket.once('close', reset);
        }),
      };
      attempts.push(a);
      return a;
    };
    // a loop moves on after 2 s without an answer, so that one stranded connection does not stop it
    const loops = Array.from({ length: 16 }, async () => {
      while (running) await Promise.race([attempt().settled, new Promise<void>((resolve) => setTimeout(resolve, 2_000).unref())]);
    });
    t.after(async () => {
      running = false;
      attempts.forEach((a) => a.socket.destroy());
      await Promise.all(loops);
    });

    // three kills, each once the previous replacement serves
    let alive = [...workers];
    for (let kill = 0; kill < 3; kill++) {
      const mark = cli.stderr.length;
      const victim = alive[0] as number;
      process.kill(victim, 'SIGKILL');
      const ready = await nextLine(cli, mark, (l) => l.event === 'worker_ready');
      alive = [...alive.slice(1), Number(ready.workerPid)];
    }
    running = false;
    await Promise.all(loops);
    // bounded: five seconds after the last replacement serves, every connection has had its answer (a handshake takes milliseconds)
    await Promise.race([Promise.all(attempts.map((a) => a.settled)), new Promise<void>((resolve) => setTimeout(resolve, 5_000).unref())]);
    const count = (state: Attempt['state']) => attempts.filter((a) => a.state === state).length;
    t.diagnostic(`${attempts.length} connections: served ${count('served')}, reset ${count('reset')}, still waiting ${count('pending')}`);
    const stranded = attempts.filter((a) => a.state === 'pending').map((a) => a.socket.localPort);
    assert.deepEqual(stranded, [], 'connections (by client port) that got neither a handshake nor a reset, 5 s after the last replacement worker serves');
  });

  test('under load, only requests on the killed worker’s connections fail, every request after the replacement is ready succeeds, and its sessions resume on the other workers', async (t) => {
    const root = pki.root('faults-kill-root');
    const leaf = pki.leaf('faults-kill-api', root, { dns: ['api.test'] });
    const { cli, port, workers: initial, dir } = await startCluster(t, leaf);
    const ca = readFileSync(root.certFile);

    const outcomes: Outcome[] = [];
    let running = true;
    const settled = new Set<() => void>();
    const record = (o: Outcome) => {
      outcomes.push(o);
      for (const fn of settled) fn();
    };
    /** Resolves once `done` holds over the outcomes so far (checked at every new outcome), bounded. */
    const until = (what: string, done: () => boolean, timeoutMs = 20_000) =>
      new Promise<void>((resolve, reject) => {
        const check = () => {
          if (!done()) return;
          settled.delete(check);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(() => {
          settled.delete(check);
          reject(new Error(`${what} did not happen within ${timeoutMs} ms (${outcomes.length} requests)`));
        }, timeoutMs);
        settled.add(check);
        check();
      });
    const loops: Promise<void>[] = [];

    // keep-alive: HTTP/2 sessions, each asking again and again on its one connection until it fails
    const sessions: ClientHttp2Session[] = [];
    t.after(() => sessions.forEach((s) => s.destroy()));
    for (let i = 0; i < 6; i++) {
      const session = h2connect(`https://api.test:${port}`, {
        createConnection: () => tlsConnect({ port, host: '127.0.0.1', servername: 'api.test', ca, ALPNProtocols: ['h2'] }),
      });
      session.on('error', () => {});
      sessions.push(session);
      let abandon: ((err: Error) => void) | null = null;
      session.on('close', () => abandon?.(new Error('session closed')));
      const ask = () =>
        new Promise<number>((resolve, reject) => {
          if (session.closed || session.destroyed) throw new Error('session closed');
          abandon = reject;
          const stream = session.request({ ':path': '/', ':authority': 'api.test' });
          let body = '';
          stream.setEncoding('utf8');
          stream.on('data', (d: string) => (body += d));
          stream.on('end', () => (stream.rstCode ? reject(new Error(`stream reset ${stream.rstCode}`)) : settleWithPid(body, resolve, reject)));
          stream.on('error', reject);
        });
      loops.push(
        (async () => {
          while (running) {
            const startedAt = Date.now();
            try {
              record({ connection: `h2-${i}`, startedAt, endedAt: Date.now(), pid: await ask(), error: null });
            } catch (err) {
              record({ connection: `h2-${i}`, startedAt, endedAt: Date.now(), pid: null, error: errorCode(err) });
              return;
            }
          }
        })(),
      );
    }

    // keep-alive: HTTP/1.1 connections, same
    const h1: TLSSocket[] = [];
    t.after(() => h1.forEach((s) => s.destroy()));
    for (let i = 0; i < 4; i++) {
      const socket = tlsConnect({ port, host: '127.0.0.1', servername: 'api.test', ca, ALPNProtocols: ['http/1.1'] });
      h1.push(socket);
      let failure: Error | null = null;
      let waiting: (() => void) | null = null;
      let buffer = '';
      socket.setEncoding('utf8');
      socket.on('data', (d: string) => {
        buffer += d;
        waiting?.();
      });
      const fail = (err: Error) => {
        failure ??= err;
        waiting?.();
      };
      socket.on('error', fail);
      socket.on('close', () => fail(new Error('connection closed')));
      const ask = async (): Promise<number> => {
        if (failure) throw failure;
        socket.write('GET / HTTP/1.1\r\nHost: api.test\r\n\r\n');
        for (;;) {
          const head = buffer.indexOf('\r\n\r\n');
          const length = Number(/content-length: (\d+)/i.exec(buffer.slice(0, head))?.[1] ?? -1);
          if (head >= 0 && length >= 0 && Buffer.byteLength(buffer.slice(head + 4)) >= length) {
            const body = buffer.slice(head + 4, head + 4 + length);
            buffer = buffer.slice(head + 4 + length);
            return (JSON.parse(body) as { pid: number }).pid;
          }
          if (failure) throw failure;
          await new Promise<void>((resolve) => (waiting = resolve));
        }
      };
      loops.push(
        (async () => {
          await once(socket, 'secureConnect');
          while (running) {
            const startedAt = Date.now();
            try {
              record({ connection: `h1-${i}`, startedAt, endedAt: Date.now(), pid: await ask(), error: null });
            } catch (err) {
              record({ connection: `h1-${i}`, startedAt, endedAt: Date.now(), pid: null, error: errorCode(err) });
              return;
            }
          }
        })(),
      );
    }

    // new connections: one TLS handshake per request, in four parallel loops that go on after failures
    let fresh = 0;
    const oneShot = () =>
      new Promise<number>((resolve, reject) => {
        const req = httpsGet({ host: '127.0.0.1', port, servername: 'api.test', path: '/', headers: { host: 'api.test' }, ca, agent: false, timeout: 5_000 }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => (body += d));
          res.on('end', () => settleWithPid(body, resolve, reject));
          res.on('error', reject);
        });
        req.on('timeout', () => req.destroy(Object.assign(new Error('no answer within 5 s'), { code: 'TIMEOUT' })));
        req.on('error', reject);
      });
    for (let i = 0; i < 4; i++) {
      loops.push(
        (async () => {
          while (running) {
            const startedAt = Date.now();
            const connection = `new-${fresh++}`;
            try {
              record({ connection, startedAt, endedAt: Date.now(), pid: await oneShot(), error: null });
            } catch (err) {
              record({ connection, startedAt, endedAt: Date.now(), pid: null, error: errorCode(err) });
            }
          }
        })(),
      );
    }
    t.after(async () => {
      running = false;
      sessions.forEach((s) => s.destroy());
      h1.forEach((s) => s.destroy());
      await Promise.all(loops);
    });

    const keepAliveIds = [...Array.from({ length: 6 }, (_, i) => `h2-${i}`), ...Array.from({ length: 4 }, (_, i) => `h1-${i}`)];
    const workerOf = (connection: string) => outcomes.find((o) => o.connection === connection && o.pid !== null)?.pid ?? null;
    await until('every keep-alive connection answered', () => keepAliveIds.every((id) => workerOf(id) !== null));
    const byWorker = new Map<number, string[]>(initial.map((pid) => [pid, keepAliveIds.filter((id) => workerOf(id) === pid)]));
    assert.ok(initial.every((pid) => (byWorker.get(pid) as string[]).length > 0), `keep-alive connections reach both workers: ${JSON.stringify([...byWorker])}`);
    const [victim, survivor] = initial as [number, number];
    const doomed = byWorker.get(victim) as string[];
    const spared = byWorker.get(survivor) as string[];

    // a session ticket issued by the worker about to be killed
    const ticket = join(dir, 'victim-session.pem');
    let madeByVictim = false;
    for (let i = 0; i < 20 && !madeByVictim; i++) {
      const made = await sClientRequest(port, 'api.test', ['-CAfile', root.certFile, '-sess_out', ticket]);
      assert.equal(made.status, '200', made.stdout + made.stderr);
      madeByVictim = Number(/"pid": (\d+)/.exec(made.stdout)?.[1]) === victim;
    }
    assert.ok(madeByVictim, 'a session was made with the worker to be killed');

    const mark = cli.stderr.length;
    const killedAt = Date.now();
    process.kill(victim, 'SIGKILL');
    const exited = await nextLine(cli, mark, (l) => l.event === 'worker_exited');
    const ready = await nextLine(cli, mark, (l) => l.event === 'worker_ready');
    const readyAt = Date.now();
    assert.equal(exited.level, 'error');
    assert.equal(exited.workerPid, victim);
    assert.equal(exited.signal, 'SIGKILL');
    assert.equal(exited.code, null);
    assert.equal(exited.restartInMs, 0, 'a first crash is restarted at once');
    const replacement = Number(ready.workerPid);
    assert.ok(!initial.includes(replacement), `a new worker (${replacement}) serves`);
    assert.equal(exited.pid, cli.pid, 'the primary logs the crash');
    assert.equal(ready.pid, cli.pid, 'the primary logs the restart');

    // load goes on until fresh connections have reached the replacement and the survivor many times
    const after = () => outcomes.filter((o) => o.connection.startsWith('new-') && o.startedAt > readyAt);
    await until('fresh connections reached the replacement and the survivor', () => after().filter((o) => o.pid === replacement).length >= 10 && after().filter((o) => o.pid === survivor).length >= 10);
    await until('the spared keep-alive connections answered after the restart', () => spared.every((id) => outcomes.some((o) => o.connection === id && o.startedAt > readyAt && o.pid === survivor)));

    const resumed = await sClientRequest(port, 'api.test', ['-CAfile', root.certFile, '-sess_in', ticket]);
    running = false;
    sessions.forEach((s) => s.close());
    h1.forEach((s) => s.end());
    await Promise.all(loops);

    const failures = outcomes.filter((o) => o.error !== null);
    const failedKeepAlive = failures.filter((o) => !o.connection.startsWith('new-'));
    const failedFresh = failures.filter((o) => o.connection.startsWith('new-'));
    t.diagnostic(`${outcomes.length} requests; killed worker ${victim} held ${doomed.length} of ${keepAliveIds.length} keep-alive connections; worker ${replacement} ready ${readyAt - killedAt} ms after the kill`);
    t.diagnostic(`failed on keep-alive connections: ${failedKeepAlive.map((o) => `${o.connection} ${o.error}`).join(', ') || 'none'}`);
    t.diagnostic(`failed new connections: ${failedFresh.length} (${failedFresh.map((o) => `${o.error} started ${o.startedAt - killedAt} ms after the kill`).join(', ') || 'none'}) of ${outcomes.filter((o) => o.connection.startsWith('new-')).length}`);

    assert.deepEqual(failedKeepAlive.map((o) => o.connection).sort(), [...doomed].sort(), 'exactly the keep-alive connections of the killed worker failed, each once');
    for (const o of failedKeepAlive) assert.ok(o.endedAt >= killedAt, `${o.connection} failed before the kill: ${o.error}`);
    for (const id of spared) assert.ok(!failures.some((o) => o.connection === id), `${id} on the surviving worker never failed`);
    assert.deepEqual(
      failedFresh.filter((o) => o.startedAt > readyAt),
      [],
      'every new connection started after the replacement was ready succeeded',
    );
    for (const o of failedFresh) assert.ok(o.endedAt >= killedAt, `a new connection failed before the kill: ${o.error}`);
    assert.ok(outcomes.filter((o) => o.pid === victim).every((o) => o.endedAt <= readyAt), 'nothing answered from the killed worker after its replacement was ready');

    assert.equal(resumed.status, '200', resumed.stdout + resumed.stderr);
    assert.equal(resumed.reused, true, 'the session made with the killed worker resumes');
    const resumedBy = Number(/"pid": (\d+)/.exec(resumed.stdout)?.[1]);
    assert.ok([survivor, replacement].includes(resumedBy), `resumed by ${resumedBy}, a living worker`);
    assert.match(resumed.stdout, /"resumed": true/);
  });
});
