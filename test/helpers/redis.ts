import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run, type RunResult } from './clients.js';
import { freePort } from './pebble.js';
import type { Scope } from './proxy.js';

/*
 * Debian's redis-server (or valkey-server) and redis-sentinel, started by the test on free
 * loopback ports in a temp folder, and stopped by PID after it (also when it
 * fails). Nothing persists between tests: no RDB, no AOF.
 */

export interface RedisOptions {
  /** Debian's redis-server 7 (the default), or valkey-server 8 from bookworm-backports. */
  readonly server?: 'redis' | 'valkey';
  /** `requirepass`: AUTH as the default user. */
  readonly password?: string;
  /** ACL lines, e.g. ["user portcullis on >secret ~pcl:* &pcl:* +@all"]. */
  readonly acl?: readonly string[];
  /** TLS on the port (rediss://): the server's certificate and key, and the CA that signs client certificates. */
  readonly tls?: { readonly cert: string; readonly key: string; readonly ca: string; readonly clientAuth?: boolean };
  /** Extra config lines, e.g. "replicaof 127.0.0.1 6379". */
  readonly extra?: readonly string[];
  /** Start on this port (a restart of a killed server); a free one when absent. */
  readonly port?: number;
}

export interface RedisServer {
  readonly port: number;
  /** redis:// (or rediss://) to 127.0.0.1:port, database 0, without credentials. */
  readonly url: string;
  readonly pid: number;
  /** Runs redis-cli against it with `args` (AUTH from the options applied). */
  cli(...args: string[]): Promise<RunResult>;
  /** SIGKILL, resolving once the process is gone: an outage as a crash makes it. Idempotent. */
  kill(): Promise<void>;
}

export async function startRedis(t: Scope, opts: RedisOptions = {}): Promise<RedisServer> {
  const port = opts.port ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), 'pcl-redis-'));
  const lines = [
    'bind 127.0.0.1',
    `dir ${dir}`,
    'save ""',
    'appendonly no',
    'daemonize no',
    'logfile ""',
    ...(opts.tls ? ['port 0', `tls-port ${port}`, `tls-cert-file ${opts.tls.cert}`, `tls-key-file ${opts.tls.key}`, `tls-ca-cert-file ${opts.tls.ca}`, `tls-auth-clients ${opts.tls.clientAuth ? 'yes' : 'no'}`] : [`port ${port}`]),
    ...(opts.password ? [`requirepass ${opts.password}`] : []),
    ...(opts.acl ?? []),
    ...(opts.extra ?? []),
  ];
  writeFileSync(join(dir, 'redis.conf'), `${lines.join('\n')}\n`);
  const proc = await startProcess(t, opts.server === 'valkey' ? 'valkey-server' : 'redis-server', [join(dir, 'redis.conf')], /Ready to accept connections/, dir);
  const auth = opts.password ? ['-a', opts.password, '--no-auth-warning'] : [];
  const tls = opts.tls ? ['--tls', '--cacert', opts.tls.ca] : [];
  return {
    port,
    url: `${opts.tls ? 'rediss' : 'redis'}://127.0.0.1:${port}/0`,
    pid: proc.pid,
    cli: (...args) => run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...tls, ...auth, ...args]),
    kill: proc.kill,
  };
}

export interface Sentinel {
  readonly port: number;
  readonly pid: number;
  cli(...args: string[]): Promise<RunResult>;
  kill(): Promise<void>;
}

/** A redis-sentinel watching `master` on 127.0.0.1:masterPort (quorum 1, failover after 1 s down). */
export async function startSentinel(t: Scope, master: string, masterPort: number): Promise<Sentinel> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'pcl-sentinel-'));
  const lines = [
    'bind 127.0.0.1',
    `port ${port}`,
    `dir ${dir}`,
    'daemonize no',
    'logfile ""',
    `sentinel monitor ${master} 127.0.0.1 ${masterPort} 1`,
    `sentinel down-after-milliseconds ${master} 1000`,
    `sentinel failover-timeout ${master} 5000`,
  ];
  writeFileSync(join(dir, 'sentinel.conf'), `${lines.join('\n')}\n`);
  const proc = await startProcess(t, 'redis-sentinel', [join(dir, 'sentinel.conf')], /Sentinel ID is/, dir);
  return { port, pid: proc.pid, cli: (...args) => run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args]), kill: proc.kill };
}

async function startProcess(t: Scope, cmd: string, args: string[], ready: RegExp, dir: string): Promise<{ pid: number; kill: () => Promise<void> }> {
  const child: ChildProcess = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const gone = new Promise<void>((resolve) => child.once('close', () => resolve()));
  const kill = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await gone;
  };
  t.after(async () => {
    await kill();
    rmSync(dir, { recursive: true, force: true });
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${cmd} did not start within 10 s:\n${output}`)), 10_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (ready.test(output)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${cmd} exited with ${code}:\n${output}`));
    });
  });
  return { pid: child.pid as number, kill };
}
