import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { freePort } from './pebble.js';
import { tempDir, type Scope } from './proxy.js';
import { waitFor } from './wait.js';

/*
 * Debian's HAProxy (2.6) as the L4 balancer in front of Portcullis: TCP mode,
 * one frontend per relay on a free loopback port, each passing connections
 * to its target with a PROXY header (`send-proxy`: v1, `send-proxy-v2`: v2).
 * HAProxy connects to the target from 127.0.0.1. Its config is written to a
 * temp folder; it runs in the foreground and is stopped by PID after the
 * test, also when the test fails.
 */

export const haproxyBinary = '/usr/sbin/haproxy';

export interface Relay {
  /** The port Portcullis listens on. */
  readonly target: number;
  readonly send: 'send-proxy' | 'send-proxy-v2';
}

export interface Haproxy {
  readonly pid: number;
  /** The frontend port of each relay, in the order given. */
  readonly ports: readonly number[];
  /** Everything HAProxy wrote to stdout and stderr so far. */
  output(): string;
}

export async function startHaproxy(t: Scope, relays: readonly Relay[]): Promise<Haproxy> {
  const dir = tempDir(t, 'pcl-haproxy-');
  const ports: number[] = [];
  for (let i = 0; i < relays.length; i++) ports.push(await freePort());
  // bound together with the relays: once it answers, every frontend listens (HAProxy binds all before serving any)
  const monitor = await freePort();
  const sections = relays.map((relay, i) => `
frontend relay${i}
  bind 127.0.0.1:${ports[i]}
  default_backend portcullis${i}

backend portcullis${i}
  server portcullis 127.0.0.1:${relay.target} ${relay.send}
`);
  const file = join(dir, 'haproxy.cfg');
  writeFileSync(
    file,
    `global
  maxconn 256

defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s

frontend monitor
  mode http
  bind 127.0.0.1:${monitor}
  monitor-uri /ready
${sections.join('')}`,
  );
  const child = spawn(haproxyBinary, ['-db', '-f', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const gone = new Promise<void>((resolve) => child.once('close', () => resolve()));
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) process.kill(child.pid as number, 'SIGTERM');
    await gone;
  });
  await waitFor(
    async () => {
      if (child.exitCode !== null) throw new Error(`haproxy exited with ${child.exitCode}:\n${output}`);
      return (await answers(monitor)) ? true : undefined;
    },
    { what: `haproxy listening on 127.0.0.1:${monitor}` },
  );
  return { pid: child.pid as number, ports, output: () => output };
}

/** Whether an HTTP GET of /ready on the port gets a 200. */
function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let text = '';
    socket.on('data', (d: Buffer) => (text += d.toString()));
    socket.on('error', () => resolve(false));
    socket.on('close', () => resolve(text.startsWith('HTTP/1.1 200') || text.startsWith('HTTP/1.0 200')));
    socket.write('GET /ready HTTP/1.0\r\n\r\n');
  });
}
