// RSS of Portcullis before and after streaming a large response through it, on this machine.
//
//   node --import tsx bench/stream-rss.ts [options]      # from the repo root; dist/ must be built
//
//   --node PATH        the node binary that runs Portcullis, repeatable (default: the one running this)
//   --root DIR         the Portcullis checkout to run (default: this one)
//   --mib N            size of the response, in MiB (default 100)
//   --alpn P           http/1.1 | h2: the client's protocol to the proxy (default http/1.1)
//   --later S          seconds after the "after" reading for one more (default 30)
//   --node-arg ARG     extra node option for Portcullis, repeatable
//
// What it does, per runtime: makes a throwaway ECDSA P-256 certificate (openssl CLI); starts an
// HTTP/1.1 upstream in this process that answers GET /big with N MiB (64 KiB chunks, written
// as the socket drains) and GET / with "ok"; starts Portcullis as a child (one site, one route to
// the upstream, every default on: access log, metrics, detector); makes 5 small requests and
// reads RSS once settled ("idle"); downloads /big through the proxy on a new TLS connection,
// reading as fast as it can and discarding, while sampling RSS every 100 ms ("peak"); reads RSS
// once settled ("after") and --later seconds later. RSS is VmRSS from /proc/PID/status;
// "settled": two reads 1 s apart within 1 % (at most 30 s). Every process it starts is stopped
// by PID on exit, failure or Ctrl-C.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { connect as http2Connect } from 'node:http2';
import { request } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { freePort, rssKb, settledRssKb } from './lib/process-rss.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values: opts } = parseArgs({
  options: {
    node: { type: 'string', multiple: true, default: [process.execPath] },
    root: { type: 'string', default: repo },
    mib: { type: 'string', default: '100' },
    alpn: { type: 'string', default: 'http/1.1' },
    later: { type: 'string', default: '30' },
    'node-arg': { type: 'string', multiple: true, default: [] },
  },
});
const log = (msg: string): void => void process.stderr.write(`[stream-rss] ${msg}\n`);
const MIB = Number(opts.mib);
const LATER_S = Number(opts.later);
if (!(MIB > 0) || !(LATER_S >= 0) || !['http/1.1', 'h2'].includes(opts.alpn)) {
  log('--mib must be > 0, --later ≥ 0, --alpn http/1.1 or h2');
  process.exit(2);
}
const work = mkdtempSync(join(tmpdir(), 'portcullis-stream-rss.'));
const children = new Set<ChildProcess>();
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
  rmSync(work, { recursive: true, force: true });
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => process.exit(130));

execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(work, 'key.pem'), '-out', join(work, 'cert.pem'), '-days', '2', '-subj', '/CN=bench.test', '-addext', 'subjectAltName=DNS:bench.test'], { stdio: 'ignore' });
const ca = readFileSync(join(work, 'cert.pem'), 'utf8');

const chunk = Buffer.alloc(64 * 1024, 'x');
const upstream = createHttpServer((req, res) => {
  if (req.url !== '/big') return void res.end('ok\n');
  const total = MIB * 1024 * 1024;
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(total) });
  let sent = 0;
  const pump = () => {
    while (sent < total) {
      sent += chunk.length;
      if (!res.write(chunk)) return void res.once('drain', pump);
    }
    res.end();
  };
  pump();
});
await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
const upstreamPort = (upstream.address() as AddressInfo).port;

/** GETs `path` through the proxy on a new connection and discards the body; resolves with its size. */
function get(port: number, path: string): Promise<number> {
  return new Promise((res, rej) => {
    let size = 0;
    if (opts.alpn === 'h2') {
      const session = http2Connect(`https://bench.test:${port}`, { host: '127.0.0.1', servername: 'bench.test', ca });
      session.on('error', rej);
      const stream = session.request({ ':path': path });
      stream.on('data', (d: Buffer) => (size += d.length));
      stream.on('end', () => session.close(() => res(size)));
      stream.on('error', rej);
      return;
    }
    const req = request({ host: '127.0.0.1', servername: 'bench.test', port, path, ca, agent: false }, (r) => {
      r.on('data', (d: Buffer) => (size += d.length));
      r.on('end', () => res(size));
    });
    req.on('error', rej);
    req.end();
  });
}

const mb = (kb: number) => (kb / 1024).toFixed(1);
console.log(`\n| runtime | client | idle MB | peak while streaming ${MIB} MiB MB | after, settled MB | ${LATER_S} s later MB | after − idle MB |\n|---|---|---:|---:|---:|---:|---:|`);
for (const node of opts.node) {
  const port = await freePort();
  const yaml = join(work, 'portcullis.yaml');
  writeFileSync(
    yaml,
    `listen: { https: "127.0.0.1:${port}" }
dataDir: ${join(work, 'data')}
sites:
  - hosts: [bench.test]
    default: true
    certificates: [{ cert: ${join(work, 'cert.pem')}, key: ${join(work, 'key.pem')} }]
    routes: [{ path: /, upstream: "http://127.0.0.1:${upstreamPort}" }]
`,
  );
  const child = spawn(node, [...opts['node-arg'], join(resolve(opts.root), 'bin/portcullis.js'), 'start', '--config', yaml], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let output = '';
  await new Promise<void>((res, rej) => {
    const onData = (d: Buffer) => {
      output += d.toString('utf8');
      if (output.includes('"event":"listening"')) res();
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => rej(new Error(`Portcullis exited (${code}):\n${output}`)));
  });
  for (let i = 0; i < 5; i++) await get(port, '/');
  const idle = (await settledRssKb(child.pid!, log)).kb;
  let peak = idle;
  const sampler = setInterval(() => (peak = Math.max(peak, rssKb(child.pid!).kb)), 100);
  const started = Date.now();
  const size = await get(port, '/big');
  clearInterval(sampler);
  if (size !== MIB * 1024 * 1024) throw new Error(`received ${size} bytes, expected ${MIB * 1024 * 1024}`);
  log(`${node}: ${MIB} MiB in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  const after = (await settledRssKb(child.pid!, log)).kb;
  await sleep(LATER_S * 1000);
  const later = rssKb(child.pid!).kb;
  const runtime = execFileSync(node, ['-p', '`Node ${process.versions.node}`'], { encoding: 'utf8' }).trim();
  console.log(`| ${runtime}${opts['node-arg'].length ? ` ${opts['node-arg'].join(' ')}` : ''} | ${opts.alpn} | ${mb(idle)} | ${mb(peak)} | ${mb(after)} | ${mb(later)} | ${mb(after - idle)} |`);
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
  children.delete(child);
}
upstream.close();
