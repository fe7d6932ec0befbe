/**
 * Soak: about ten minutes of mixed traffic against one proxy process, with a
 * reload every 30 s, checking that good clients never see an error outside
 * a reload window, that every bad client gets its documented refusal, that
 * RSS stays flat and that no socket, timer or descriptor outlives the
 * traffic. Not part of `npm test`.
 *
 *   node --import tsx scripts/soak.ts [--minutes 10] [--report FILE] [--warmup-seconds 30]
 *                                     [--reload-every-seconds 30] [--keep-logs DIR]
 *
 * The proxy runs in a child process (scripts/soak/harness.ts) so that its
 * memory and handles are measured apart from the clients and the upstream,
 * which run here. Everything runs on 127.0.0.1; every client verifies the
 * proxy's certificate (a PKI made with the openssl CLI in a temp folder).
 * Exit status 0 when every check passes, 1 otherwise; every process started
 * is stopped by its PID and the temp folders removed, on failure and on
 * Ctrl-C too. See docs/reliability.md#soak.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect as tlsConnect } from 'node:tls';
import { h1, type Target } from './soak/good-clients.js';
import type { BadTarget } from './soak/bad-clients.js';
import type { HarnessAsk, HarnessReply, HarnessRequest, HarnessStats } from './soak/protocol.js';
import { checksOf, leaks, render, type Sample, type SoakRun } from './soak/report.js';
import { apiHost, configText, fingerprintOf, makePki, writeConfig, type SoakPki, type Variant } from './soak/setup.js';
import { Tally } from './soak/tally.js';
import { startTraffic, type Traffic } from './soak/traffic.js';
import { startSoakUpstream, type SoakUpstream } from './soak/upstream.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values: opts } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    report: { type: 'string' },
    'warmup-seconds': { type: 'string', default: '30' },
    'reload-every-seconds': { type: 'string', default: '30' },
    'keep-logs': { type: 'string' },
  },
});
const minutes = Number(opts.minutes);
const warmupSeconds = Number(opts['warmup-seconds']);
const reloadEverySeconds = Number(opts['reload-every-seconds']);
if (!(minutes > 0) || !(warmupSeconds >= 5) || !(reloadEverySeconds >= 5)) {
  console.error('usage: node --import tsx scripts/soak.ts [--minutes N>0] [--report FILE] [--warmup-seconds N>=5] [--reload-every-seconds N>=5] [--keep-logs DIR]');
  process.exit(2);
}
const statsEveryMs = 5000;
/** After the traffic stops: how long the proxy may take to get back to its baseline, polled every 500 ms. */
const settleMs = 30_000;

const began = Date.now();
/** Set on Ctrl-C: the run goes on unwinding while everything is stopped, but says nothing more. */
let interrupted = false;
const log = (message: string, always = false) => {
  if (!interrupted || always) console.error(`[soak +${((Date.now() - began) / 1000).toFixed(0)} s] ${message}`);
};

// ---- everything started, stopped by PID in reverse order, once ----------------------------

const cleanups: (() => unknown)[] = [];
let cleaning: Promise<void> | null = null;
const cleanup = (): Promise<void> =>
  (cleaning ??= (async () => {
    for (const fn of cleanups.reverse()) {
      try {
        await fn();
      } catch (err) {
        console.error(`cleanup: ${(err as Error).message}`);
      }
    }
  })());
for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
  process.on(signal, () => {
    log(`${signal}: stopping everything`, true);
    interrupted = true;
    void cleanup().then(() => process.exit(code));
  });
}

/** Kills a child by its PID: SIGTERM, then SIGKILL if it is still there after 3 s. */
async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise((r) => child.once('exit', r));
  process.kill(child.pid, 'SIGTERM');
  const timer = setTimeout(() => child.pid !== undefined && child.exitCode === null && child.signalCode === null && process.kill(child.pid, 'SIGKILL'), 3000);
  await exited;
  clearTimeout(timer);
}

// ---- the harness child -----------------------------------------------------------------------

interface Harness {
  readonly child: ChildProcess;
  readonly port: number;
  ask(request: HarnessAsk, timeoutMs?: number): Promise<HarnessReply>;
  stats(gc?: boolean): Promise<HarnessStats>;
  /** Set once the child exited without being asked to. */
  crashed: string | null;
  /** Resolves when the child exits, for whatever reason. */
  readonly exited: Promise<void>;
  /** The last 64 KiB of its stdout and stderr. */
  output(): string;
  stopping: boolean;
}

async function startHarness(configFile: string, logFile: string): Promise<Harness> {
  const child = fork(join(root, 'scripts/soak/harness.ts'), [configFile, logFile], { cwd: root, execArgv: ['--import', 'tsx', '--expose-gc'], stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
  cleanups.push(() => stopChild(child));
  let output = '';
  const keep = (d: Buffer) => (output = (output + d.toString()).slice(-65_536));
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const pending = new Map<number, (reply: HarnessReply) => void>();
  let nextId = 1;
  let onReady: (port: number) => void = () => {};
  const ready = new Promise<number>((r) => (onReady = r));
  child.on('message', (reply: HarnessReply) => {
    if (reply.type === 'ready') onReady(reply.port);
    pending.get(reply.id)?.(reply);
    pending.delete(reply.id);
  });
  const harness: Harness = {
    child,
    port: 0,
    crashed: null,
    stopping: false,
    exited: new Promise<void>((r) => child.once('exit', () => r())),
    output: () => output,
    ask(request, timeoutMs = 15_000) {
      return new Promise((resolve, reject) => {
        if (!child.connected) return reject(new Error('the proxy process is gone'));
        const id = nextId++;
        const timer = setTimeout(() => {
          pending.delete(id);
          reject(new Error(`the proxy process did not answer ${request.type} within ${timeoutMs} ms`));
        }, timeoutMs);
        pending.set(id, (reply) => {
          clearTimeout(timer);
          resolve(reply);
        });
        child.send({ ...request, id } as HarnessRequest);
      });
    },
    async stats(gc = false) {
      const reply = await harness.ask({ type: 'stats', gc });
      if (reply.type !== 'stats') throw new Error(`unexpected reply ${reply.type}`);
      return reply.stats;
    },
  };
  child.once('exit', (code, signal) => {
    if (!harness.stopping) harness.crashed = `the proxy process exited on its own (code ${code}, signal ${signal}); its output ends with:\n${output.slice(-4000)}`;
    for (const settle of pending.values()) settle({ id: -1, type: 'stopped' });
  });
  const port = await Promise.race([ready, harness.exited.then(() => Promise.reject(new Error(`the proxy process did not start:\n${output.slice(-4000)}`))), sleep(60_000).then(() => Promise.reject(new Error('the proxy process did not start within 60 s')))]);
  return Object.assign(harness, { port });
}

// ---- reloads ---------------------------------------------------------------------------------

interface Reloads {
  /** Applies the other config and checks that it serves: certificate, new route, old route gone. */
  once(): Promise<void>;
}

function reloads(harness: Harness, target: Target, tally: Tally, pki: SoakPki, configFile: string, dir: string, upstream: SoakUpstream): Reloads {
  let variant: Variant = 'a';
  const served = async (): Promise<string> =>
    new Promise((resolve, reject) => {
      const s = tlsConnect({ host: '127.0.0.1', port: target.port, servername: apiHost, ca: target.ca });
      s.once('secureConnect', () => {
        const fp = s.getPeerCertificate().fingerprint256;
        s.destroy();
        resolve(fp);
      });
      s.once('error', reject);
      s.setTimeout(10_000, () => s.destroy(new Error('no handshake within 10 s')));
    });
  const verify = async (v: Variant): Promise<string | null> => {
    const other: Variant = v === 'a' ? 'b' : 'a';
    const fp = await served();
    const expected = fingerprintOf(v === 'a' ? pki.apiA : pki.apiB);
    if (fp !== expected) return `a new handshake got certificate ${fp.slice(0, 20)}…, not config ${v.toUpperCase()}'s ${expected.slice(0, 20)}…`;
    const added = await h1(target, { host: apiHost, path: `/gen-${v}/check`, agent: { cert: null } });
    if (added.status !== 200 || added.text !== `path:/gen-${v}/check`) return `the new route /gen-${v}/ answered ${added.status} "${added.text.slice(0, 100)}"`;
    const removed = await h1(target, { host: apiHost, path: `/gen-${other}/check`, agent: { cert: null } });
    if (removed.status !== 404 || !removed.text.includes('"no_route"')) return `the removed route /gen-${other}/ answered ${removed.status} "${removed.text.slice(0, 100)}"`;
    return null;
  };
  return {
    async once() {
      variant = variant === 'a' ? 'b' : 'a';
      writeConfig(configFile, configText(variant, dir, pki, upstream.origin));
      const startedAt = Date.now();
      let error: string | null = null;
      let endedAt = startedAt;
      try {
        const reply = await harness.ask({ type: 'reload' }, 60_000);
        endedAt = Date.now();
        if (reply.type !== 'reloaded') error = `unexpected reply ${reply.type}`;
        else if (!reply.ok) error = reply.error;
        else error = await verify(variant);
      } catch (err) {
        endedAt = Date.now();
        error = (err as Error).message;
      }
      tally.reloads.push({ startedAt, endedAt, variant, ok: error === null, error });
      if (error) log(`reload to ${variant.toUpperCase()} failed: ${error}`);
    },
  };
}

// ---- measurements ----------------------------------------------------------------------------

/** Polls until nothing is open beyond `baseline` (or, without one, until fds and connections stop moving); returns the last figures. */
async function settle(harness: Harness, baseline: HarnessStats | null, limitMs: number): Promise<{ stats: HarnessStats; afterMs: number }> {
  const started = Date.now();
  let last = await harness.stats();
  let steadySince = Date.now();
  while (Date.now() - started < limitMs) {
    await sleep(500);
    const now = await harness.stats();
    if (baseline) {
      last = now;
      if (leaks(baseline, now).length === 0) break;
      continue;
    }
    // the baseline itself: idle (no connection) and no fd change for 6 s, past the upstream pools' keep-alive
    if (now.openFds !== last.openFds || now.openConnections !== 0) steadySince = Date.now();
    last = now;
    if (Date.now() - steadySince >= 6000) break;
  }
  return { stats: last, afterMs: Date.now() - started };
}

function readLines(file: string): Record<string, unknown>[] {
  if (!existsSync(file)) return [];
  const out: Record<string, unknown>[] = [];
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (!line) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      out.push({ unparsed: line });
    }
  }
  return out;
}

const increment = (m: Map<string, number>, key: string) => m.set(key, (m.get(key) ?? 0) + 1);

// ---- the run ---------------------------------------------------------------------------------

async function main(): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'pcl-soak-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  log(`making certificates with openssl in ${dir} …`);
  const pki = makePki();
  cleanups.push(() => pki.pki.cleanup());
  const upstream = await startSoakUpstream();
  cleanups.push(() => upstream.close());
  const configFile = join(dir, 'portcullis.yaml');
  const logFile = join(dir, 'proxy.log');
  writeConfig(configFile, configText('a', dir, pki, upstream.origin));
  const harness = await startHarness(configFile, logFile);
  /** The proxy's figures every 5 s of the measured run. */
  const samples: Sample[] = [];
  if (opts['keep-logs']) {
    const keepDir = resolve(opts['keep-logs']);
    // before the temp folder goes (cleanups run in reverse order)
    cleanups.push(() => {
      mkdirSync(keepDir, { recursive: true });
      for (const f of ['proxy.log', 'access.log', 'portcullis.yaml']) if (existsSync(join(dir, f))) copyFileSync(join(dir, f), join(keepDir, f));
      writeFileSync(join(keepDir, 'proxy-output.txt'), harness.output());
      writeFileSync(join(keepDir, 'samples.json'), JSON.stringify(samples));
      log(`logs kept in ${keepDir}`);
    });
  }
  log(`proxy (pid ${harness.child.pid}, ${process.version}) on 127.0.0.1:${harness.port}; upstream ${upstream.origin}`);

  const tally = new Tally();
  const target: BadTarget = { port: harness.port, ca: readFileSync(pki.serverCaFile), caFile: pki.serverCaFile, tally, children: new Set() };
  cleanups.push(() => {
    for (const c of target.children) if (c.pid !== undefined && c.exitCode === null) process.kill(c.pid, 'SIGKILL');
  });
  const reload = reloads(harness, target, tally, pki, configFile, dir, upstream);
  let traffic: Traffic | null = null;
  // on Ctrl-C the proxy is killed next, which ends every client at once; do not wait for slow ones
  cleanups.push(() => traffic && Promise.race([traffic.stop(), sleep(3000)]));
  const crashed = harness.exited.then(() => 'crashed' as const);

  // warm-up: every kind of client and one reload, then idle: the baseline
  log(`warm-up: ${warmupSeconds} s of traffic and one reload`);
  traffic = startTraffic(target, pki);
  await Promise.race([sleep((warmupSeconds * 1000) / 2), crashed]);
  if (!harness.crashed) await reload.once();
  await Promise.race([sleep((warmupSeconds * 1000) / 2), crashed]);
  await traffic.stop();
  traffic = null;
  let baseline: HarnessStats | null = null;
  let upstreamBaseline = 0;
  let heapBaseline = 0;
  if (!harness.crashed) {
    await settle(harness, null, 40_000);
    // taken after a forced GC, for a heap figure without garbage; a collection closes no handle, so the rest is as idle as it was
    baseline = await harness.stats(true);
    heapBaseline = baseline.heapUsed;
    upstreamBaseline = await upstream.connections();
    log(`baseline: ${baseline.openFds} fds, ${baseline.openConnections} connections, RSS ${(baseline.rss / 1048576).toFixed(1)} MB, resources ${JSON.stringify(baseline.activeResources)}`);
  }

  // the measured run
  const cpuStart = { generator: process.cpuUsage(), harness: baseline?.cpuMicros ?? 0, at: Date.now() };
  const runStart = Date.now();
  const durationMs = minutes * 60_000;
  log(`traffic for ${minutes} min, a reload every ${reloadEverySeconds} s`);
  traffic = startTraffic(target, pki);
  const sampler = setInterval(() => {
    harness
      .stats()
      .then((stats) => samples.push({ t: Date.now() - runStart, stats }))
      .catch(() => {});
  }, statsEveryMs);
  let reloading: Promise<void> = Promise.resolve();
  const reloader = setInterval(() => (reloading = reloading.then(() => reload.once())), reloadEverySeconds * 1000);
  const progress = setInterval(() => {
    const good = [...tally.good.values()].reduce((n, c) => n + c.ok + c.failed, 0);
    const last = samples.at(-1);
    log(`${good} good requests, ${tally.goodFailures.length} failed; ${[...tally.bad.values()].reduce((n, c) => n + c.refused + c.wrong, 0)} bad clients; ${tally.reloads.length} reloads; RSS ${last ? (last.stats.rss / 1048576).toFixed(1) : '?'} MB`);
  }, 60_000);
  await Promise.race([sleep(durationMs), crashed]);
  clearInterval(sampler);
  clearInterval(reloader);
  clearInterval(progress);
  log('stopping the traffic');
  await reloading;
  await traffic.stop();
  traffic = null;
  const elapsedMs = Date.now() - cpuStart.at;

  let final: HarnessStats | null = null;
  let settledAfterMs = 0;
  let heapFinal = 0;
  let upstreamFinal = 0;
  if (!harness.crashed && baseline) {
    const settled = await settle(harness, baseline, settleMs);
    final = settled.stats;
    settledAfterMs = settled.afterMs;
    upstreamFinal = await upstream.connections();
    heapFinal = (await harness.stats(true)).heapUsed;
    log(`after the run: ${final.openFds} fds, ${final.openConnections} connections, resources ${JSON.stringify(final.activeResources)}`);
  }
  const cpuGenerator = process.cpuUsage(cpuStart.generator);
  const harnessCpuMicros = final ? final.cpuMicros - cpuStart.harness : 0;

  // stop the proxy the way an operator would, and see it exit 0
  if (!harness.crashed) {
    harness.stopping = true;
    await harness.ask({ type: 'stop' }, 30_000).catch((err: Error) => (harness.crashed = `stop: ${err.message}`));
    await Promise.race([harness.exited, sleep(10_000)]);
    if (harness.child.exitCode === null && harness.child.signalCode === null) harness.crashed = 'did not exit within 10 s of stop';
    else if (harness.child.exitCode !== 0) harness.crashed = `exited with code ${harness.child.exitCode} after stop`;
  }

  const logEvents = new Map<string, number>();
  const logErrors: string[] = [];
  for (const line of readLines(logFile)) {
    increment(logEvents, `${String(line.event ?? line.msg ?? 'unparsed')}${line.level === 'info' ? '' : ` (${String(line.level)})`}`);
    if (line.level === 'error' || line.level === 'fatal' || line.unparsed) logErrors.push(JSON.stringify(line));
  }
  const byStatus = new Map<string, number>();
  const incomplete = new Map<string, number>();
  const accessLines = readLines(join(dir, 'access.log'));
  for (const line of accessLines) {
    increment(byStatus, String(line.status));
    if (line.completed === false) increment(incomplete, String(line.reason));
  }

  const cpu = cpus();
  const run: SoakRun = {
    command: `node --import tsx scripts/soak.ts ${process.argv.slice(2).join(' ')}`.trim(),
    machine: `${cpu.length} cores (${cpu[0]?.model.trim() ?? 'unknown'}), ${process.platform} ${process.arch}, OpenSSL ${process.versions.openssl}`,
    node: process.version,
    startedAt: new Date(runStart),
    minutes,
    warmupSeconds,
    reloadEverySeconds,
    tally,
    samples,
    baseline,
    final,
    settledAfterMs,
    upstreamConnections: { baseline: upstreamBaseline, final: upstreamFinal },
    heapAfterGc: baseline && final ? { baseline: heapBaseline / 1048576, final: heapFinal / 1048576 } : null,
    crashed: harness.crashed,
    cpu: { harnessPct: (harnessCpuMicros / 1000 / elapsedMs) * 100, generatorPct: ((cpuGenerator.user + cpuGenerator.system) / 1000 / elapsedMs) * 100 },
    logEvents,
    logErrors,
    access: { lines: accessLines.length, byStatus, incomplete },
  };
  const checks = checksOf(run);
  const text = render(run, checks);
  console.log(text);
  if (opts.report) writeFileSync(opts.report, `${text}\n`);
  return checks.every((c) => c.ok) ? 0 : 1;
}

let status = 1;
try {
  status = await main();
} catch (err) {
  console.error(`soak failed: ${(err as Error).stack ?? String(err)}`);
} finally {
  await cleanup();
}
process.exit(status);
