import { spawn, type ChildProcess } from 'node:child_process';
import { Resolver } from 'node:dns/promises';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import { get } from 'node:https';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { run } from './clients.js';
import { tempDir, type Scope } from './proxy.js';
import { waitFor } from './wait.js';

/**
 * Debian's `pebble` ACME test server (2.4) with `pebble-challtestsrv` as its
 * DNS, everything on 127.0.0.1. Every name resolves to 127.0.0.1 (A only, no
 * AAAA), so pebble's validation authority connects to 127.0.0.1:httpPort
 * (http-01) and 127.0.0.1:tlsPort (tls-alpn-01) for any identifier.
 */

export interface PebbleOptions {
  /** Where pebble's validation authority connects for http-01 challenges (config "httpPort"). */
  readonly httpPort: number;
  /** Where it connects for tls-alpn-01 challenges (config "tlsPort"). */
  readonly tlsPort: number;
  /** Lifetime of issued certificates in seconds (config "certificateValidityPeriod"); pebble's default is 5 years. */
  readonly certificateValidityPeriod?: number;
  /**
   * Names pebble refuses in new-order (config "domainBlocklist"): an entry blocks
   * the name and every name under it; new-order then fails with a 400
   * `urn:ietf:params:acme:error:rejectedIdentifier` problem.
   */
  readonly domainBlocklist?: readonly string[];
  /** Extra environment for pebble, e.g. { PEBBLE_VA_ALWAYS_VALID: '1' }, { PEBBLE_AUTHZREUSE: '0' }. */
  readonly env?: Readonly<Record<string, string>>;
}

export interface Pebble {
  /** The ACME directory, https://127.0.0.1:PORT/dir. */
  readonly directory: string;
  /** The CA (PEM file) of the certificate pebble's own HTTPS (directory and management) presents. */
  readonly caFile: string;
  /** The root that issued certificates chain to (management /roots/0); pebble makes a new one at every start. */
  rootPem(): Promise<string>;
  /** Stops pebble and pebble-challtestsrv (SIGTERM, SIGKILL after 3 s); idempotent, also run after the test. */
  stop(): Promise<void>;
  /** Everything pebble printed so far, then pebble-challtestsrv's output. */
  output(): string;
}

/** A port that was free on 127.0.0.1 for both TCP and UDP a moment ago. */
export async function freePort(): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    const server = createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as AddressInfo).port;
    await new Promise((resolve) => server.close(resolve));
    // the DNS server also needs the port over UDP
    const udp = createSocket('udp4');
    const udpFree = await new Promise<boolean>((resolve) => {
      udp.once('error', () => resolve(false));
      udp.bind(port, '127.0.0.1', () => resolve(true));
    });
    if (udpFree) await new Promise<void>((resolve) => udp.close(() => resolve()));
    if (udpFree || attempt >= 20) return port;
  }
}

/** A throwaway CA and a leaf for 127.0.0.1 and localhost that pebble serves its HTTPS with. */
async function makeWfeCertificate(dir: string): Promise<{ caFile: string; certFile: string; keyFile: string }> {
  const f = (name: string) => join(dir, name);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  writeFileSync(
    f('leaf.ext'),
    'subjectAltName = IP:127.0.0.1, DNS:localhost\nbasicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\nextendedKeyUsage = serverAuth\n',
  );
  const steps: string[][] = [
    ['req', '-x509', ...ec, '-keyout', f('wfe-ca.key'), '-out', f('wfe-ca.pem'), '-days', '2', '-subj', '/CN=Pebble WFE test CA'],
    ['req', '-new', ...ec, '-keyout', f('wfe.key'), '-out', f('wfe.csr'), '-subj', '/CN=localhost'],
    ['x509', '-req', '-in', f('wfe.csr'), '-CA', f('wfe-ca.pem'), '-CAkey', f('wfe-ca.key'), '-CAcreateserial', '-days', '2', '-extfile', f('leaf.ext'), '-out', f('wfe.pem')],
  ];
  for (const args of steps) {
    const r = await run('openssl', args, '', 20_000);
    if (r.code !== 0) throw new Error(`openssl ${args.join(' ')} failed:\n${r.stderr}`);
  }
  return { caFile: f('wfe-ca.pem'), certFile: f('wfe.pem'), keyFile: f('wfe.key') };
}

/** GET over HTTPS trusting only `ca`; bounded in time. */
function httpsGet(url: string, ca: Buffer, timeoutMs = 5_000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = get(url, { ca, agent: false, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

/** A child process with everything it printed captured; `closed` settles once it exited and its output is all read. */
interface Proc {
  readonly child: ChildProcess;
  readonly closed: Promise<void>;
  readonly done: () => boolean;
}

function spawnCaptured(cmd: string, args: readonly string[], env: NodeJS.ProcessEnv, sink: (text: string) => void): Proc {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  let done = false;
  child.stdout?.on('data', (d: Buffer) => sink(d.toString()));
  child.stderr?.on('data', (d: Buffer) => sink(d.toString()));
  child.on('error', (err) => sink(`${cmd}: ${err.message}\n`));
  // 'close' comes after 'exit' once stdout/stderr are drained, and also after a failed spawn
  const closed = new Promise<void>((resolve) =>
    child.once('close', (code, signal) => {
      done = true;
      sink(`[${cmd} exited: ${signal ?? code}]\n`);
      resolve();
    }),
  );
  return { child, closed, done: () => done };
}

/** SIGTERM, then SIGKILL after 3 s; resolves once the process is gone. */
async function kill(proc: Proc): Promise<void> {
  if (proc.done()) return;
  proc.child.kill('SIGTERM');
  const timer = setTimeout(() => proc.child.kill('SIGKILL'), 3_000);
  await proc.closed;
  clearTimeout(timer);
}

/** Inherited PEBBLE_* variables would change pebble's behaviour behind the test's back: only ours count. */
function pebbleEnv(extra: Readonly<Record<string, string>> | undefined): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PEBBLE_')) env[k] = v;
  return { ...env, PEBBLE_VA_NOSLEEP: '1', PEBBLE_WFE_NONCEREJECT: '0', ...extra };
}

/**
 * Starts pebble-challtestsrv (DNS only) and pebble, and waits (at most 10 s)
 * until pebble's directory answers; both are stopped after the test.
 */
export async function startPebble(t: Scope, opts: PebbleOptions): Promise<Pebble> {
  const dir = tempDir(t, 'pcl-pebble-');
  const wfe = await makeWfeCertificate(dir);
  const ca = readFileSync(wfe.caFile);
  const ports = new Set<number>();
  while (ports.size < 4) ports.add(await freePort());
  const [acmePort, mgmtPort, dnsPort, challMgmtPort] = [...ports] as [number, number, number, number];
  const configFile = join(dir, 'pebble-config.json');
  writeFileSync(
    configFile,
    JSON.stringify(
      {
        pebble: {
          listenAddress: `127.0.0.1:${acmePort}`,
          managementListenAddress: `127.0.0.1:${mgmtPort}`,
          certificate: wfe.certFile,
          privateKey: wfe.keyFile,
          httpPort: opts.httpPort,
          tlsPort: opts.tlsPort,
          ocspResponderURL: '',
          externalAccountBindingRequired: false,
          ...(opts.domainBlocklist ? { domainBlocklist: opts.domainBlocklist } : {}),
          ...(opts.certificateValidityPeriod === undefined ? {} : { certificateValidityPeriod: opts.certificateValidityPeriod }),
        },
      },
      null,
      2,
    ),
  );

  let pebbleOut = '';
  let dnsOut = '';
  const output = () => `${pebbleOut}\n--- pebble-challtestsrv ---\n${dnsOut}`;
  const procs: Proc[] = [];
  let stopped: Promise<void> | null = null;
  const stop = () => (stopped ??= Promise.all(procs.map(kill)).then(() => undefined));
  t.after(stop);

  const dnsArgs = ['-dns01', `127.0.0.1:${dnsPort}`, '-http01', '', '-https01', '', '-tlsalpn01', '', '-management', `127.0.0.1:${challMgmtPort}`, '-defaultIPv4', '127.0.0.1', '-defaultIPv6', ''];
  const dns = spawnCaptured('pebble-challtestsrv', dnsArgs, process.env, (text) => void (dnsOut += text));
  procs.push(dns);

  const directory = `https://127.0.0.1:${acmePort}/dir`;
  /**
   * Polls until `ready` holds; stops everything and throws with the output once a process ended or 10 s passed.
   * A poll: ready means answering a query, and neither server announces that in a form to wait on.
   */
  const waitUntil = async (what: string, proc: Proc, ready: () => Promise<boolean>) => {
    const outcome = await waitFor(
      async () => {
        if (await ready().catch(() => false)) return 'ready';
        const ended = [proc, dns].find((p) => p.done() || p.child.exitCode !== null || p.child.signalCode !== null);
        return ended ? `failed: ${ended === dns ? 'pebble-challtestsrv' : 'pebble'} exited` : undefined;
      },
      { what, timeoutMs: 10_000 },
    ).catch(() => 'did not answer within 10 s');
    if (outcome === 'ready') return;
    await stop();
    throw new Error(`${what} ${outcome}:\n${output()}`);
  };

  const resolver = new Resolver({ timeout: 500, tries: 1 });
  resolver.setServers([`127.0.0.1:${dnsPort}`]);
  await waitUntil('pebble-challtestsrv DNS', dns, async () => (await resolver.resolve4('ready.test')).includes('127.0.0.1'));

  const pebble = spawnCaptured('pebble', ['-config', configFile, '-dnsserver', `127.0.0.1:${dnsPort}`], pebbleEnv(opts.env), (text) => void (pebbleOut += text));
  procs.push(pebble);
  await waitUntil(`pebble (directory ${directory})`, pebble, async () => (await httpsGet(directory, ca, 1_000)).status === 200);

  const management = async (path: string) => {
    const url = `https://127.0.0.1:${mgmtPort}${path}`;
    const r = await httpsGet(url, ca);
    if (r.status !== 200) throw new Error(`GET ${url}: ${r.status} ${r.body}`);
    return r.body;
  };

  return {
    directory,
    caFile: wfe.caFile,
    rootPem: () => management('/roots/0'),
    stop,
    output,
  };
}
