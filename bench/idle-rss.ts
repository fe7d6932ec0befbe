// Idle RSS of the zero-config quickstart, and what Node itself costs, on this machine.
//
//   node --import tsx bench/idle-rss.ts [options]      # from the repo root; dist/ must be built
//
//   --node PATH        the node binary that runs everything measured, repeatable
//                      (default: the one running this)
//   --root DIR         the Portcullis checkout to run (default: this one)
//   --runs N           quickstarts per runtime; the table shows the median (default 3)
//   --requests N       HTTPS requests (new connection each) before the second reading (default 20)
//   --node-arg ARG     extra node option for the quickstart, repeatable (--node-arg=--max-semi-space-size=2)
//   --probe            preload a probe that adds process.memoryUsage() and the V8 heap
//                      (young generation apart) to each reading (it costs ~1 MB itself)
//   --no-baselines     skip the empty `node -e` process and the empty node:https server
//
// What it does, per runtime and run: in a fresh temporary folder, `node ROOT/bin/portcullis.js
// start --listen 127.0.0.1:PORT` (the quickstart: no config, a local CA made at start, one site
// answering builtin:whoami); waits for its "serving" line; reads RSS once settled ("start");
// makes --requests HTTPS requests, each on a new TLS connection verified against the
// quickstart's CA; reads RSS once settled again ("after requests"). RSS is VmRSS from
// /proc/PID/status, summed over the process and its children (the quickstart serves in one
// process: the child count is printed to show it); "settled" means two reads 1 s apart differ
// by less than 1 % (at most 30 s). The baselines are measured the same way: an empty process
// (`node -e` with a timer) and a node:https server with a P-256 certificate answering "ok".
// Prints a markdown table on stdout, progress on stderr; every process it starts is stopped by
// PID on exit, failure or Ctrl-C.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { freePort, settledRssKb } from './lib/process-rss.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values: opts } = parseArgs({
  options: {
    node: { type: 'string', multiple: true, default: [process.execPath] },
    root: { type: 'string', default: repo },
    runs: { type: 'string', default: '3' },
    requests: { type: 'string', default: '20' },
    'node-arg': { type: 'string', multiple: true, default: [] },
    probe: { type: 'boolean', default: false },
    'no-baselines': { type: 'boolean', default: false },
  },
});
const log = (msg: string): void => void process.stderr.write(`[idle-rss] ${msg}\n`);
const RUNS = Number(opts.runs);
const REQUESTS = Number(opts.requests);
if (!Number.isInteger(RUNS) || RUNS < 1 || !Number.isInteger(REQUESTS) || REQUESTS < 0) {
  log('--runs must be ≥ 1 and --requests ≥ 0');
  process.exit(2);
}
const ROOT = resolve(opts.root);
const work = mkdtempSync(join(tmpdir(), 'portcullis-idle-rss.'));
const children = new Set<ChildProcess>();
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function cleanup(): void {
  for (const child of children) child.kill('SIGKILL');
  rmSync(work, { recursive: true, force: true });
}
process.on('exit', cleanup);
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => process.exit(130));

/** Starts a child and resolves once its stderr or stdout contains `ready`. */
function startChild(node: string, args: string[], cwd: string, ready: string): Promise<ChildProcess> {
  const child = spawn(node, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let output = '';
  return new Promise((res, rej) => {
    const onData = (chunk: Buffer) => {
      output += chunk.toString('utf8');
      if (output.includes(ready)) res(child);
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => rej(new Error(`${node} ${args.join(' ')} exited (${code}) before "${ready}":\n${output}`)));
    setTimeout(() => rej(new Error(`no "${ready}" within 60 s:\n${output}`)), 60_000).unref();
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
  children.delete(child);
}

function get(port: number, ca: string): Promise<void> {
  return new Promise((res, rej) => {
    const req = request({ host: '127.0.0.1', servername: 'localhost', port, path: '/', ca, agent: false }, (r) => {
      r.resume();
      r.on('end', res);
    });
    req.on('error', rej);
    req.end();
  });
}

const probeFile = join(work, 'probe.mjs');
writeFileSync(
  probeFile,
  `import { writeFileSync } from 'node:fs';
import { getHeapSpaceStatistics, getHeapStatistics } from 'node:v8';
process.on('SIGUSR2', () => {
  const young = getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');
  writeFileSync(process.env.IDLE_RSS_PROBE_OUT, JSON.stringify({ ...process.memoryUsage(), heapPhysical: getHeapStatistics().total_physical_size, young: young ? young.physical_space_size : 0 }));
});
`,
);
async function probeOf(child: ChildProcess, out: string): Promise<string> {
  if (!opts.probe) return '';
  rmSync(out, { force: true });
  child.kill('SIGUSR2');
  for (let i = 0; i < 100; i++) {
    await sleep(50);
    try {
      const p = JSON.parse(readFileSync(out, 'utf8')) as { heapUsed: number; heapPhysical: number; young: number; external: number };
      const mb = (n: number) => (n / 1048576).toFixed(1);
      return ` (V8 heap resident ${mb(p.heapPhysical)}, young gen ${mb(p.young)}, used ${mb(p.heapUsed)}, external ${mb(p.external)})`;
    } catch {
      // not written yet
    }
  }
  return ' (probe did not answer)';
}

interface Row {
  runtime: string;
  scenario: string;
  start: number[];
  after: number[];
  processes: number;
  note: string;
}
const rows: Row[] = [];
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const mb = (kb: number) => (kb / 1024).toFixed(1);

async function quickstart(node: string): Promise<Row> {
  const row: Row = { runtime: '', scenario: `quickstart${opts['node-arg'].length ? ` ${opts['node-arg'].join(' ')}` : ''}`, start: [], after: [], processes: 0, note: '' };
  for (let run = 0; run < RUNS; run++) {
    const dir = mkdtempSync(join(work, 'qs-'));
    const port = await freePort();
    const out = join(dir, 'probe.json');
    const args = [...opts['node-arg'], ...(opts.probe ? ['--import', probeFile] : []), join(ROOT, 'bin/portcullis.js'), 'start', '--listen', `127.0.0.1:${port}`];
    process.env.IDLE_RSS_PROBE_OUT = out;
    const child = await startChild(node, args, dir, 'quickstart is serving');
    const start = await settledRssKb(child.pid!, log);
    const startProbe = await probeOf(child, out);
    const ca = readFileSync(join(dir, '.portcullis/ca/ca.pem'), 'utf8');
    for (let i = 0; i < REQUESTS; i++) await get(port, ca);
    const after = await settledRssKb(child.pid!, log);
    const afterProbe = await probeOf(child, out);
    await stopChild(child);
    log(`${node} run ${run + 1}: start ${mb(start.kb)} MB${startProbe}, after ${REQUESTS} requests ${mb(after.kb)} MB${afterProbe}, processes ${after.processes}`);
    row.start.push(start.kb);
    row.after.push(after.kb);
    row.processes = after.processes;
    row.note = afterProbe;
  }
  return row;
}

async function baseline(node: string, scenario: string, args: string[], ready: string, request: ((port: number) => Promise<void>) | null, port: number): Promise<Row> {
  const row: Row = { runtime: '', scenario, start: [], after: [], processes: 1, note: '' };
  for (let run = 0; run < RUNS; run++) {
    const child = await startChild(node, args, work, ready);
    row.start.push((await settledRssKb(child.pid!, log)).kb);
    if (request) for (let i = 0; i < REQUESTS; i++) await request(port);
    row.after.push((await settledRssKb(child.pid!, log)).kb);
    await stopChild(child);
  }
  return row;
}

execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(work, 'key.pem'), '-out', join(work, 'cert.pem'), '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost'], { stdio: 'ignore' });
const emptyHttps = (port: number) =>
  `const https = require('node:https'); const fs = require('node:fs');
https.createServer({ cert: fs.readFileSync(${JSON.stringify(join(work, 'cert.pem'))}), key: fs.readFileSync(${JSON.stringify(join(work, 'key.pem'))}) }, (q, s) => s.end('ok\\n'))
  .listen(${port}, '127.0.0.1', () => console.log('listening'));`;

for (const node of opts.node) {
  const runtime = execFileSync(node, ['-p', '`Node ${process.versions.node} (OpenSSL ${process.versions.openssl})`'], { encoding: 'utf8' }).trim();
  if (!opts['no-baselines']) {
    rows.push({ ...(await baseline(node, 'empty process (`node -e`)', ['-e', 'console.log("ready"); setInterval(() => {}, 1e6)'], 'ready', null, 0)), runtime });
    const port = await freePort();
    const ca = readFileSync(join(work, 'cert.pem'), 'utf8');
    rows.push({ ...(await baseline(node, 'empty node:https server', ['-e', emptyHttps(port)], 'listening', (p) => get(p, ca), port)), runtime });
  }
  rows.push({ ...(await quickstart(node)), runtime });
}

console.log(`\n| runtime | scenario | RSS at start MB | RSS after ${REQUESTS} requests MB | processes |\n|---|---|---:|---:|---:|`);
for (const r of rows) console.log(`| ${r.runtime} | ${r.scenario} | ${mb(median(r.start))} | ${mb(median(r.after))} | ${r.processes} |`);
console.log(`\nMedian of ${RUNS} run(s); RSS is VmRSS, settled.`);
