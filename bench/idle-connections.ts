// Memory per idle TLS connection: Portcullis and nginx, on this machine, in one run.
//
//   node --import tsx bench/idle-connections.ts [options]      # from the repo root
//
//   --connections N      idle connections to hold open (default 5000)
//   --alpn P             http/1.1 | h2 | none (no ALPN extension: HTTP/1.1) (default http/1.1)
//   --request R          get: each connection sends one GET and reads the answer, then stays
//                        idle (what keep-alive clients do); none: handshake only (an h2
//                        connection still sends its preface and SETTINGS) (default get)
//   --proxy X            portcullis | nginx | both (default both; measured one after the other)
//   --node PATH          the node binary that runs Portcullis (default: the one running this)
//   --root DIR           the Portcullis checkout to run (default: this one; dist/ must be built)
//   --node-arg ARG       extra node option for Portcullis, repeatable (--node-arg=--max-semi-space-size=1)
//   --proxy-env K=V      extra environment for the proxy process only, repeatable (MALLOC_ARENA_MAX=2)
//   --warmup N           connections opened and closed before the baseline (default 100)
//   --after-close S      seconds to wait after the close reading for the late one (default 30)
//   --concurrency N      handshakes in flight at once (default 32)
//   --bare               run Portcullis without the memory probe (see below): no process.memoryUsage()
//                        figures, no full garbage collection before the baseline
//   --malloc-trim        at the end, call glibc's malloc_trim(0) in the proxy through gdb and
//                        read RSS once more (shows how much of what is kept is free heap)
//   --keep-open S        after the open reading, hold the connections S more seconds (to attach
//                        a profiler by the printed PID) before closing them (default 0)
//   --hold-baseline S    wait S seconds after the baseline reading before opening (same purpose)
//
// What it does, per proxy: makes a throwaway ECDSA P-256 root + leaf (bench.test, 127.0.0.1)
// with the openssl CLI; starts a tiny HTTP/1.1 upstream in this process and the proxy as a
// child (Portcullis: `node bin/portcullis.js start`, one site, one route, access log off,
// timeouts long enough to keep every connection; nginx: foreground, its own prefix,
// worker_processes 1, the TLS settings of bench/run.sh, keep-alive 30 min); opens
// --warmup connections and closes them; reads the baseline; opens N connections (full
// TLS 1.3 handshakes with SNI, X25519, no resumption), each then sending one GET (unless
// --request none); reads the proxy's RSS once settled; closes them all; reads again once
// settled and once more --after-close seconds later. RSS is VmRSS from /proc/PID/status
// (nginx: master + worker); "settled" means two reads 1 s apart differ by less than 1 %
// (at most 60 s). Prints markdown tables on stdout, progress on stderr.
//
// The memory probe (Portcullis, unless --bare): a module preloaded with --import and
// --expose-gc that answers SIGUSR2 with process.memoryUsage() and the V8 heap's resident
// size, so each reading splits into V8 heap (young generation apart) and the rest of RSS
// (OpenSSL, Node's C++ objects, buffers, malloc overhead). The baseline is taken after a
// full GC (start-up garbage would otherwise be collected during the open phase and hide
// growth); one more reading after "N open" and one at the end follow a full GC too.
//
// File descriptors: this process holds N client sockets and the proxy N server sockets.
// When the soft limit (ulimit -n) is too low and the hard limit allows, this script re-runs
// itself under `ulimit -n`; otherwise it says what to raise. Every process it starts is
// stopped by PID on exit, failure, Ctrl-C or SIGTERM.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { connect as http2Connect, type ClientHttp2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '..');

const { values: opts } = parseArgs({
  options: {
    connections: { type: 'string', default: '5000' },
    alpn: { type: 'string', default: 'http/1.1' },
    request: { type: 'string', default: 'get' },
    proxy: { type: 'string', default: 'both' },
    node: { type: 'string', default: process.execPath },
    root: { type: 'string', default: repo },
    'node-arg': { type: 'string', multiple: true, default: [] },
    'proxy-env': { type: 'string', multiple: true, default: [] },
    warmup: { type: 'string', default: '100' },
    'after-close': { type: 'string', default: '30' },
    concurrency: { type: 'string', default: '32' },
    bare: { type: 'boolean', default: false },
    'malloc-trim': { type: 'boolean', default: false },
    'keep-open': { type: 'string', default: '0' },
    'hold-baseline': { type: 'string', default: '0' },
  },
  strict: true,
});

const log = (msg: string): void => void process.stderr.write(`[idle] ${msg}\n`);
function die(msg: string): never {
  throw new Error(msg);
}
const int = (name: string, text: string, min: number, max: number): number => {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > max) die(`--${name} must be an integer ${min}..${max} (got '${text}')`);
  return n;
};

const N = int('connections', opts.connections, 1, 200_000);
const WARMUP = int('warmup', opts.warmup, 0, 100_000);
const AFTER_CLOSE_S = int('after-close', opts['after-close'], 0, 3600);
const CONCURRENCY = int('concurrency', opts.concurrency, 1, 1000);
const KEEP_OPEN_S = int('keep-open', opts['keep-open'], 0, 86_400);
const HOLD_BASELINE_S = int('hold-baseline', opts['hold-baseline'], 0, 86_400);
const ALPN = opts.alpn;
if (ALPN !== 'http/1.1' && ALPN !== 'h2' && ALPN !== 'none') die(`--alpn must be http/1.1, h2 or none (got '${ALPN}')`);
const REQUEST = opts.request;
if (REQUEST !== 'get' && REQUEST !== 'none') die(`--request must be get or none (got '${REQUEST}')`);
type ProxyName = 'portcullis' | 'nginx';
const PROXIES: readonly ProxyName[] =
  opts.proxy === 'both' ? ['portcullis', 'nginx'] : opts.proxy === 'portcullis' || opts.proxy === 'nginx' ? [opts.proxy] : die(`--proxy must be portcullis, nginx or both (got '${opts.proxy}')`);
const ROOT = resolve(opts.root);
const NODE = opts.node;
const PROXY_ENV: Record<string, string> = {};
for (const kv of opts['proxy-env']) {
  const i = kv.indexOf('=');
  if (i < 1) die(`--proxy-env wants K=V (got '${kv}')`);
  PROXY_ENV[kv.slice(0, i)] = kv.slice(i + 1);
}

// ---------------------------------------------------------------- file descriptors
// This process: N client sockets + the upstream's; the proxy: N + its own. Headroom for both.
const fdsNeeded = N + WARMUP + 512;
function openFilesLimit(): { soft: number; hard: number } {
  const line = readFileSync('/proc/self/limits', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('Max open files'));
  const [soft, hard] = (line ?? '').split(/\s+/).slice(3, 5).map((v) => (v === 'unlimited' ? Infinity : Number(v)));
  return { soft: soft ?? 0, hard: hard ?? 0 };
}
{
  const { soft, hard } = openFilesLimit();
  if (soft < fdsNeeded) {
    if (hard < fdsNeeded) die(`needs about ${fdsNeeded} open files per process; the hard limit is ${hard}. As root: ulimit -Hn ${fdsNeeded} (or raise nofile in limits.conf), then run again`);
    if (process.env.PCL_IDLE_BENCH_REEXEC) die(`could not raise the open-files limit to ${fdsNeeded} (still ${soft})`);
    log(`raising the open-files limit from ${soft} to ${fdsNeeded}: re-running under ulimit -n`);
    const child = spawn('/bin/sh', ['-c', `ulimit -n ${fdsNeeded} && exec "$0" "$@"`, process.execPath, ...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
      stdio: 'inherit',
      env: { ...process.env, PCL_IDLE_BENCH_REEXEC: '1' },
    });
    // the child handles Ctrl-C itself (same process group); this one only waits and passes TERM on
    process.on('SIGINT', () => {});
    process.on('SIGTERM', () => child.kill('SIGTERM'));
    child.on('exit', (code, signal) => process.exit(code ?? (signal ? 128 : 1)));
    await new Promise(() => {});
  }
}

// ---------------------------------------------------------------- processes and cleanup
const work = mkdtempSync(join(tmpdir(), 'portcullis-idle.'));
const children = new Set<ChildProcess>();
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function spawnChild(cmd: string, args: string[], logFile: string, env: NodeJS.ProcessEnv = process.env): ChildProcess {
  const out = openSync(logFile, 'a');
  const child = spawn(cmd, args, { stdio: ['ignore', out, out], env, cwd: work });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** SIGTERM, then SIGKILL after 5 s; only to the PIDs this script started and that are still running. */
async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}

let cleaning: Promise<void> | null = null;
const cleanup = (): Promise<void> =>
  (cleaning ??= (async () => {
    await Promise.all([...children].map(stopChild));
    rmSync(work, { recursive: true, force: true });
  })());
process.on('exit', () => {
  // last resort (e.g. process.exit elsewhere): no child outlives this script
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  rmSync(work, { recursive: true, force: true });
});
for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
  process.on(signal, () => {
    log(`${signal}: stopping what this script started`);
    void cleanup().then(() => process.exit(code));
  });
}

// ---------------------------------------------------------------- certificates
const pki = join(work, 'pki');
mkdirSync(pki);
const openssl = (...args: string[]) => execFileSync('openssl', args, { stdio: ['ignore', 'pipe', 'pipe'] });
function makePki(): void {
  openssl('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', join(pki, 'ca.key'));
  openssl('req', '-x509', '-new', '-key', join(pki, 'ca.key'), '-sha256', '-days', '2', '-subj', '/CN=Portcullis idle bench CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-out', join(pki, 'ca.pem'));
  openssl('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', join(pki, 'leaf.key'));
  openssl('req', '-new', '-key', join(pki, 'leaf.key'), '-subj', '/CN=bench.test', '-out', join(pki, 'leaf.csr'));
  writeFileSync(join(pki, 'leaf.ext'), 'subjectAltName=DNS:bench.test,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\nbasicConstraints=critical,CA:FALSE\n');
  openssl('x509', '-req', '-in', join(pki, 'leaf.csr'), '-CA', join(pki, 'ca.pem'), '-CAkey', join(pki, 'ca.key'), '-CAcreateserial', '-days', '2', '-sha256', '-extfile', join(pki, 'leaf.ext'), '-out', join(pki, 'leaf.pem'));
}

// ---------------------------------------------------------------- /proc readings
interface Reading {
  readonly rssKb: number;
  readonly anonKb: number;
  readonly fds: number;
}

/** The PIDs whose memory counts: the process and its direct children (nginx's worker). */
function pidsOf(pid: number): number[] {
  const pids = [pid];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) pids.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

function statusKb(pid: number, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

function read(pid: number): Reading {
  let rssKb = 0;
  let anonKb = 0;
  let fds = 0;
  for (const p of pidsOf(pid)) {
    rssKb += statusKb(p, 'VmRSS');
    anonKb += statusKb(p, 'RssAnon');
    fds += readdirSync(`/proc/${p}/fd`).length;
  }
  return { rssKb, anonKb, fds };
}

/** Reads until two reads 1 s apart differ by less than 1 % (at most `maxS` seconds). */
type Settled = Reading & { readonly afterS: number };
async function settled(pid: number, maxS = 60): Promise<Settled> {
  let prev = read(pid);
  for (let s = 1; s <= maxS; s++) {
    await sleep(1000);
    const cur = read(pid);
    if (Math.abs(cur.rssKb - prev.rssKb) < 0.01 * prev.rssKb) return { ...cur, afterS: s };
    prev = cur;
  }
  log(`RSS did not settle within ${maxS} s; taking the last reading`);
  return { ...prev, afterS: maxS };
}

// ---------------------------------------------------------------- the memory probe (Portcullis)
// A module preloaded into Portcullis (--import, with --expose-gc): on SIGUSR2 it runs the
// command in probe.cmd ("read", or "gc": two full garbage collections first) and writes
// process.memoryUsage() and the V8 heap's committed physical size (all spaces, and the
// young generation alone) to probe.json. It adds no timer and no listener but the signal's.
interface ProbeReading {
  readonly rss: number;
  readonly heapTotal: number;
  readonly heapUsed: number;
  readonly external: number;
  readonly arrayBuffers: number;
  /** v8.getHeapStatistics().total_physical_size: the V8 heap's resident part. */
  readonly heapPhysical: number;
  /** new_space physical size (the young generation's semi-spaces). */
  readonly newSpacePhysical: number;
}
const probeFile = join(work, 'probe.mjs');
const probeCmd = join(work, 'probe.cmd');
const probeOut = join(work, 'probe.json');
writeFileSync(
  probeFile,
  `import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { getHeapSpaceStatistics, getHeapStatistics } from 'node:v8';
process.on('SIGUSR2', () => {
  if (readFileSync(${JSON.stringify(probeCmd)}, 'utf8') === 'gc' && globalThis.gc) { globalThis.gc(); globalThis.gc(); }
  const newSpace = getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');
  const reading = { ...process.memoryUsage(), heapPhysical: getHeapStatistics().total_physical_size, newSpacePhysical: newSpace ? newSpace.physical_space_size : 0 };
  writeFileSync(${JSON.stringify(probeOut)} + '.tmp', JSON.stringify(reading));
  renameSync(${JSON.stringify(probeOut)} + '.tmp', ${JSON.stringify(probeOut)});
});
`,
);
const PROBE = !opts.bare;
async function probe(run: Running, cmd: 'read' | 'gc'): Promise<ProbeReading | null> {
  if (!PROBE || !run.probed) return null;
  rmSync(probeOut, { force: true });
  writeFileSync(probeCmd, cmd);
  run.child.kill('SIGUSR2');
  for (let i = 0; i < 500; i++) {
    await sleep(20);
    if (existsSync(probeOut)) return JSON.parse(readFileSync(probeOut, 'utf8')) as ProbeReading;
  }
  die('the memory probe in Portcullis did not answer within 10 s');
}

// ---------------------------------------------------------------- upstream and proxies
async function startUpstream(): Promise<{ port: number; close(): void }> {
  const server = createHttpServer({ keepAliveTimeout: 600_000 }, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '3' });
    res.end('ok\n');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

function freePort(): number {
  return Number(execFileSync(process.execPath, [join(repo, 'bench/free-ports.js'), '1'], { encoding: 'utf8' }).trim());
}

interface Running {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly port: number;
  readonly logFile: string;
  readonly label: string;
  /** Whether the memory probe is loaded (Portcullis unless --bare). */
  readonly probed: boolean;
}

function startPortcullis(upstreamPort: number): Running {
  const port = freePort();
  const yaml = join(work, 'portcullis.yaml');
  writeFileSync(
    yaml,
    `listen: { https: "127.0.0.1:${port}" }
dataDir: ${join(work, 'portcullis-data')}
log: { access: off }
timeouts: { idle: 30m, headers: 10m, request: 30m }
sites:
  - hosts: [bench.test, 127.0.0.1]
    default: true
    certificates: [{ cert: ${join(pki, 'leaf.pem')}, key: ${join(pki, 'leaf.key')} }]
    routes: [{ path: /, upstream: "http://127.0.0.1:${upstreamPort}" }]
`,
  );
  const main = join(ROOT, 'bin/portcullis.js');
  if (!existsSync(join(ROOT, 'dist/cli/main.js'))) die(`${ROOT}/dist is missing: npm run build there first`);
  const built = statSync(join(ROOT, 'dist/cli/main.js')).mtimeMs;
  const stale = existsSync(join(ROOT, 'src')) && readdirSync(join(ROOT, 'src'), { recursive: true }).some((f) => statSync(join(ROOT, 'src', String(f))).mtimeMs > built);
  if (stale) log(`warning: ${ROOT}/src has files newer than dist/: the figures are for the last build (npm run build)`);
  const nodeArgs = [...opts['node-arg'], ...(PROBE ? ['--expose-gc', `--import=${probeFile}`] : [])];
  const logFile = join(work, 'portcullis.log');
  const child = spawnChild(NODE, [...nodeArgs, main, 'start', '--config', yaml], logFile, { ...process.env, ...PROXY_ENV });
  const version = execFileSync(NODE, ['-p', 'process.version + " (OpenSSL " + process.versions.openssl + ")"'], { encoding: 'utf8' }).trim();
  const extra = [...opts['node-arg'], ...Object.entries(PROXY_ENV).map(([k, v]) => `${k}=${v}`)].join(' ');
  return { child, pid: child.pid!, port, logFile, probed: true, label: `Portcullis, node ${version}${extra ? `, ${extra}` : ''}` };
}

function startNginx(upstreamPort: number): Running {
  const nginx = ['/usr/sbin/nginx', '/usr/bin/nginx'].find((p) => existsSync(p)) ?? die('nginx not found: apt-get install -y nginx-light');
  const port = freePort();
  const prefix = join(work, 'nginx');
  for (const d of ['logs', 'tmp']) mkdirSync(join(prefix, d), { recursive: true });
  const conns = N + WARMUP + 1024;
  // The TLS settings of bench/run.sh; http2 on the listener so that --alpn h2 works (HTTP/1.1 clients are unaffected).
  writeFileSync(
    join(prefix, 'nginx.conf'),
    `worker_processes 1;
worker_rlimit_nofile ${conns + 64};
pid ${prefix}/nginx.pid;
lock_file ${prefix}/nginx.lock;
error_log ${prefix}/logs/error.log warn;
events { worker_connections ${conns}; }
http {
  client_body_temp_path ${prefix}/tmp/body;
  proxy_temp_path ${prefix}/tmp/proxy;
  fastcgi_temp_path ${prefix}/tmp/fastcgi;
  uwsgi_temp_path ${prefix}/tmp/uwsgi;
  scgi_temp_path ${prefix}/tmp/scgi;
  access_log off;
  server_tokens off;
  upstream backend {
    server 127.0.0.1:${upstreamPort};
    keepalive 32;
  }
  server {
    listen 127.0.0.1:${port} ssl http2;
    server_name bench.test 127.0.0.1;
    ssl_certificate ${pki}/leaf.pem;
    ssl_certificate_key ${pki}/leaf.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305;
    ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256;
    ssl_prefer_server_ciphers on;
    ssl_ecdh_curve X25519:prime256v1:secp384r1;
    ssl_session_cache shared:SSL:10m;
    keepalive_requests 10000000;
    keepalive_timeout 30m;
    client_header_timeout 10m;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      add_header Strict-Transport-Security "max-age=31536000; includeSubDomains" always;
    }
  }
}
`,
  );
  const logFile = join(prefix, 'logs/stdout.log');
  try {
    execFileSync(nginx, ['-t', '-q', '-p', prefix, '-c', join(prefix, 'nginx.conf'), '-g', 'daemon off;'], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    die(`nginx -t failed: ${String((err as { stderr?: Buffer }).stderr ?? err)}`);
  }
  const child = spawnChild(nginx, ['-p', prefix, '-c', join(prefix, 'nginx.conf'), '-g', 'daemon off;'], logFile, { ...process.env, ...PROXY_ENV });
  // nginx -v prints to stderr
  const version = spawnSync(nginx, ['-v'], { encoding: 'utf8' }).stderr.replace('nginx version: ', '').trim();
  return { child, pid: child.pid!, port, logFile, probed: false, label: `${version}, master + worker` };
}

// ---------------------------------------------------------------- the clients
/** The throwaway root, PEM (read once the PKI is made). */
let caPem = '';

interface Conn {
  readonly socket: TLSSocket;
  readonly session: ClientHttp2Session | null;
}

interface OpenStats {
  protocol: string;
  alpn: string;
  cipher: string;
  resumed: number;
  closedEarly: number;
}

function handshake(port: number, alpn: string): Promise<TLSSocket> {
  return new Promise((resolveHs, reject) => {
    const socket = tlsConnect({
      host: '127.0.0.1',
      port,
      servername: 'bench.test',
      ca: caPem,
      minVersion: 'TLSv1.3',
      maxVersion: 'TLSv1.3',
      ecdhCurve: 'X25519:prime256v1:secp384r1',
      ...(alpn === 'none' ? {} : { ALPNProtocols: [alpn] }),
    });
    socket.once('secureConnect', () => {
      socket.off('error', reject);
      resolveHs(socket);
    });
    socket.once('error', reject);
  });
}

/** One GET over HTTP/1.1 on an open TLS socket; resolves once the whole answer is read. */
function http1Get(socket: TLSSocket): Promise<void> {
  return new Promise((resolveGet, reject) => {
    let text = '';
    const onData = (chunk: Buffer): void => {
      text += chunk.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      if (end < 0) return;
      const status = Number(text.slice(9, 12));
      const length = /\r\ncontent-length:\s*(\d+)/i.exec(text.slice(0, end));
      const chunked = /\r\ntransfer-encoding:\s*chunked/i.test(text.slice(0, end));
      const body = text.length - end - 4;
      const done = length ? body >= Number(length[1]) : chunked ? text.endsWith('0\r\n\r\n') : false;
      if (!done) return;
      socket.off('data', onData);
      socket.off('error', reject);
      // the socket keeps no 'data' listener: it is paused, as an idle keep-alive client's is
      socket.pause();
      if (status !== 200) reject(new Error(`GET answered ${status}`));
      else resolveGet();
    };
    socket.on('data', onData);
    socket.once('error', reject);
    socket.write('GET / HTTP/1.1\r\nHost: bench.test\r\nUser-Agent: idle-bench\r\nAccept: */*\r\n\r\n');
  });
}

async function openOne(port: number, stats: OpenStats): Promise<Conn> {
  const socket = await handshake(port, ALPN);
  stats.protocol = socket.getProtocol() ?? '?';
  stats.cipher = socket.getCipher()?.standardName ?? '?';
  stats.alpn = socket.alpnProtocol || 'none';
  if (socket.isSessionReused()) stats.resumed++;
  if (ALPN === 'h2' && socket.alpnProtocol !== 'h2') die(`asked for h2, the server chose ${socket.alpnProtocol || 'no ALPN'}`);
  if (ALPN !== 'h2' && socket.alpnProtocol && socket.alpnProtocol !== 'http/1.1') die(`asked for ${ALPN}, the server chose ${socket.alpnProtocol}`);
  socket.on('error', () => {});
  if (ALPN === 'h2') {
    const session = http2Connect('https://bench.test', { createConnection: () => socket });
    session.on('error', () => {});
    await new Promise<void>((r, reject) => {
      session.once('remoteSettings', () => r());
      session.once('close', () => reject(new Error('h2 session closed before SETTINGS')));
    });
    if (REQUEST === 'get') {
      await new Promise<void>((r, reject) => {
        const stream = session.request({ ':method': 'GET', ':path': '/', ':authority': 'bench.test', 'user-agent': 'idle-bench' });
        let status = 0;
        stream.on('response', (h) => (status = Number(h[':status'])));
        stream.on('data', () => {});
        stream.on('close', () => (status === 200 ? r() : reject(new Error(`GET answered ${status}`))));
        stream.on('error', reject);
      });
    }
    return { socket, session };
  }
  if (REQUEST === 'get') await http1Get(socket);
  return { socket, session: null };
}

/** Opens `count` connections, CONCURRENCY handshakes at a time. */
async function openMany(port: number, count: number, stats: OpenStats): Promise<Conn[]> {
  const conns: Conn[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      next++;
      const conn = await openOne(port, stats);
      conn.socket.once('close', () => {
        if (!closing) stats.closedEarly++;
      });
      conns.push(conn);
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, count) }, worker));
  return conns;
}

/** Set while this script closes connections itself: closes before are the proxy's doing. */
let closing = false;

async function closeAll(conns: Conn[]): Promise<void> {
  closing = true;
  await Promise.all(
    conns.map(
      (c) =>
        new Promise<void>((r) => {
          if (c.socket.destroyed) return r();
          c.socket.once('close', () => r());
          if (c.session) c.session.close();
          else c.socket.end();
          setTimeout(() => c.socket.destroy(), 5_000).unref();
        }),
    ),
  );
  closing = false;
}

async function waitReady(run: Running): Promise<void> {
  const deadline = Date.now() + 30_000;
  let last = '';
  while (Date.now() < deadline) {
    if (run.child.exitCode !== null) die(`${run.label} exited during start-up:\n${readFileSync(run.logFile, 'utf8').slice(-2000)}`);
    try {
      const socket = await handshake(run.port, 'http/1.1');
      await http1Get(socket);
      socket.destroy();
      return;
    } catch (err) {
      last = (err as Error).message;
      await sleep(100);
    }
  }
  die(`${run.label} did not answer 200 within 30 s (last: ${last}); log ${run.logFile}:\n${readFileSync(run.logFile, 'utf8').slice(-2000)}`);
}

// ---------------------------------------------------------------- one proxy
interface Phase {
  readonly name: string;
  readonly proc: Reading;
  readonly heap: ProbeReading | null;
}

interface Result {
  readonly proxy: ProxyName;
  readonly label: string;
  readonly phases: Map<string, Phase>;
  readonly openS: number;
  readonly stats: OpenStats;
}

/** Calls glibc's malloc_trim(0) in each process through gdb (it returns free heap pages to the system). */
function mallocTrim(pid: number): void {
  for (const p of pidsOf(pid)) {
    const r = spawnSync('gdb', ['-p', String(p), '-batch', '-nx', '-ex', 'call (int) malloc_trim(0)'], { encoding: 'utf8', timeout: 60_000 });
    if (r.status !== 0) die(`gdb could not call malloc_trim in ${p}: ${r.stderr || r.error?.message}`);
  }
}

async function measure(which: ProxyName, upstreamPort: number): Promise<Result> {
  const run = which === 'portcullis' ? startPortcullis(upstreamPort) : startNginx(upstreamPort);
  log(`${run.label}: PID ${run.pid}, port ${run.port}`);
  await waitReady(run);
  const phases = new Map<string, Phase>();
  const note = async (name: string, proc: Reading, heapCmd: 'read' | 'gc' | null = 'read'): Promise<Phase> => {
    const phase = { name, proc, heap: heapCmd ? await probe(run, heapCmd) : null };
    phases.set(name, phase);
    return phase;
  };
  await note('at start', await settled(run.pid));
  const stats: OpenStats = { protocol: '', alpn: '', cipher: '', resumed: 0, closedEarly: 0 };
  if (WARMUP > 0) {
    log(`warm-up: ${WARMUP} connections opened and closed`);
    await closeAll(await openMany(run.port, WARMUP, stats));
    for (let i = 0; i < 100 && read(run.pid).fds > phases.get('at start')!.proc.fds + CONCURRENCY + 16; i++) await sleep(100);
  }
  // the start-up garbage (config parsing, module loading) would otherwise be collected during the open phase and hide growth
  if (run.probed) await probe(run, 'gc');
  const baseline = await note('baseline (after warm-up, full GC)', await settled(run.pid));
  log(`baseline ${mb(baseline.proc.rssKb)} MB (${baseline.proc.fds} fds)`);
  if (HOLD_BASELINE_S > 0) {
    log(`holding the baseline ${HOLD_BASELINE_S} s (PID ${run.pid})`);
    await sleep(HOLD_BASELINE_S * 1000);
  }
  log(`opening ${N} connections (ALPN ${ALPN}, request ${REQUEST})`);
  stats.resumed = 0;
  stats.closedEarly = 0;
  const t0 = performance.now();
  const conns = await openMany(run.port, N, stats);
  const openS = (performance.now() - t0) / 1000;
  log(`${conns.length} open in ${openS.toFixed(1)} s (${stats.protocol}, ${stats.cipher}, ALPN ${stats.alpn}, ${stats.resumed} resumed); waiting for RSS to settle`);
  const open = await note(`${N} open`, await settled(run.pid));
  log(`with ${N} open: ${mb(open.proc.rssKb)} MB (${open.proc.fds} fds, settled after ${(open.proc as Settled).afterS} s)`);
  if (run.probed) {
    await probe(run, 'gc');
    await note(`${N} open, after a full GC`, await settled(run.pid));
  }
  if (KEEP_OPEN_S > 0) {
    log(`holding the connections ${KEEP_OPEN_S} s (PID ${run.pid})`);
    await sleep(KEEP_OPEN_S * 1000);
  }
  if (stats.closedEarly > 0) log(`warning: the proxy closed ${stats.closedEarly} connection(s) while they were idle`);
  await closeAll(conns);
  conns.length = 0;
  // the proxy has let go of the sockets once its descriptor count is back near the baseline (upstream connections aside)
  for (let i = 0; i < 300 && read(run.pid).fds > baseline.proc.fds + CONCURRENCY + 16; i++) await sleep(100);
  const closed = await note('all closed', await settled(run.pid));
  log(`after close: ${mb(closed.proc.rssKb)} MB (${closed.proc.fds} fds); waiting ${AFTER_CLOSE_S} s more`);
  await sleep(AFTER_CLOSE_S * 1000);
  const late = await note(`${AFTER_CLOSE_S} s after close`, read(run.pid));
  log(`${AFTER_CLOSE_S} s later: ${mb(late.proc.rssKb)} MB`);
  if (run.probed) {
    await probe(run, 'gc');
    await note('then a full GC', await settled(run.pid));
  }
  if (opts['malloc-trim']) {
    mallocTrim(run.pid);
    await note('then malloc_trim(0)', await settled(run.pid));
  }
  await stopChild(run.child);
  return { proxy: which, label: run.label, phases, openS, stats };
}

const mb = (kb: number): string => (kb / 1024).toFixed(1);

// ---------------------------------------------------------------- main
try {
  makePki();
  caPem = readFileSync(join(pki, 'ca.pem'), 'utf8');
  const upstream = await startUpstream();
  const results: Result[] = [];
  try {
    for (const which of PROXIES) results.push(await measure(which, upstream.port));
  } finally {
    upstream.close();
  }
  const git = (() => {
    try {
      const rev = execFileSync('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
      const dirty = execFileSync('git', ['-C', ROOT, 'status', '--porcelain', '--', 'src'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
      return `${rev}${dirty ? ' (src/ has uncommitted changes)' : ''}`;
    } catch {
      return '?';
    }
  })();
  const out: string[] = [];
  const first = results[0]?.stats;
  out.push(
    `${N} idle TLS connections: ${first?.protocol ?? '?'} ${first?.cipher ?? '?'}, X25519, full handshakes with SNI, ALPN ${ALPN === 'none' ? 'not offered' : ALPN}, ${REQUEST === 'get' ? 'one GET each, then idle' : 'no request'}. ` +
      `${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, ${execFileSync('nproc', { encoding: 'utf8' }).trim()} CPUs, Portcullis ${git}${ROOT === repo ? '' : ` from ${ROOT}`}.`,
  );
  out.push('');
  out.push(`| proxy | RSS at start MB | baseline MB | RSS with ${N} open MB | KB per connection | RSS after close MB | returned | RSS ${AFTER_CLOSE_S} s later MB | returned |`);
  out.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of results) {
    const at = (name: string) => r.phases.get(name)!.proc.rssKb;
    const base = at('baseline (after warm-up, full GC)');
    const open = at(`${N} open`);
    const returned = (kb: number) => (open > base ? `${Math.round((100 * (open - kb)) / (open - base))} %` : '-');
    out.push(
      `| ${r.label} | ${mb(at('at start'))} | ${mb(base)} | ${mb(open)} | ${((open - base) / N).toFixed(1)} | ${mb(at('all closed'))} | ${returned(at('all closed'))} | ${mb(at(`${AFTER_CLOSE_S} s after close`))} | ${returned(at(`${AFTER_CLOSE_S} s after close`))} |`,
    );
  }
  for (const r of results) {
    const base = r.phases.get('baseline (after warm-up, full GC)')!;
    out.push('');
    out.push(`${r.label}, every reading (MB, and growth from the baseline in KB per connection; the V8 columns come from the probe in Portcullis):`);
    out.push('');
    out.push('| reading | VmRSS | Δ KB/conn. | V8 heap resident | of it young gen. | Δ KB/conn. | heapUsed | Δ KB/conn. | arrayBuffers | RSS outside the V8 heap | Δ KB/conn. |');
    out.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const p of r.phases.values()) {
      const h = p.heap;
      const bh = base.heap;
      const m = (b: number | undefined) => (b === undefined ? '' : (b / 1048576).toFixed(1));
      const d = (kb: number | undefined) => (p === base || kb === undefined || Number.isNaN(kb) ? '' : (kb / N).toFixed(1));
      const outside = (x: Phase) => (x.heap ? x.proc.rssKb - x.heap.heapPhysical / 1024 : undefined);
      out.push(
        `| ${p.name} | ${mb(p.proc.rssKb)} | ${d(p.proc.rssKb - base.proc.rssKb)} | ${m(h?.heapPhysical)} | ${m(h?.newSpacePhysical)} | ${h && bh ? d((h.heapPhysical - bh.heapPhysical) / 1024) : ''} | ` +
          `${m(h?.heapUsed)} | ${h && bh ? d((h.heapUsed - bh.heapUsed) / 1024) : ''} | ${m(h?.arrayBuffers)} | ${h ? mb(outside(p)!) : ''} | ${h && bh ? d(outside(p)! - outside(base)!) : ''} |`,
      );
    }
  }
  out.push('');
  for (const r of results) {
    if (r.stats.closedEarly || r.stats.resumed) out.push(`- ${r.proxy}: ${r.stats.closedEarly} connection(s) closed by the proxy while idle (the figures are wrong), ${r.stats.resumed} resumed handshake(s)`);
    const f = (name: string) => r.phases.get(name)?.proc.fds ?? '?';
    out.push(`- ${r.proxy}: ${N} connections opened in ${r.openS.toFixed(1)} s; descriptors ${f('baseline (after warm-up, full GC)')} → ${f(`${N} open`)} → ${f('all closed')}`);
  }
  process.stdout.write(`${out.join('\n')}\n`);
  await cleanup();
} catch (err) {
  log(`failed: ${(err as Error).stack ?? String(err)}`);
  await cleanup();
  process.exitCode = 1;
}
