import { readApiKeys, type ApiKeyRecord } from '../access/index.js';
import cluster, { type Worker } from 'node:cluster';
import { formatHostPort, type Config } from '../config/index.js';
import { PortcullisError } from '../errors.js';
import { AggregatorRegistry } from 'prom-client';
import type { AdminListener } from '../admin/index.js';
import { SupervisorMetrics, type Logger } from '../observe/index.js';
import { TicketKeyRing } from '../tls/index.js';
import type { FileSource } from './config-source.js';
import { openControlSocket } from './control-socket.js';
import type { ToPrimary, ToWorker, WorkerMetrics } from './messages.js';
import { Reloader, type ReloadResult } from './reloader.js';
import { apiKeyStore, denyListStore, StoreSync } from './store-sync.js';
import { FileWatcher, watchedFilesOf } from './file-watcher.js';
import { renewalOf, scheduleInternalRenewal } from './internal-certificates.js';
import { openAdmin } from './admin-for.js';
import { startAcme } from './acme-for.js';
import { noChallenges, type AcmeChallengeSet, type AcmeManager } from '../acme/index.js';
import { readDenyList } from '../trust/index.js';
import type { DenyEntry } from '../trust/index.js';
import { onStopSignals } from './stop-signals.js';

/** A worker that dies again within this long of the previous death counts towards crash backoff. */
const crashWindowMs = 60_000;
const maxRestartDelayMs = 30_000;
/** How long a worker may take to answer a reload before it counts as failed. */
const workerReloadTimeoutMs = 60_000;
/** How long a scrape waits for a worker's metrics; a worker that does not answer is left out of that scrape. */
const workerScrapeTimeoutMs = 5_000;
/** Beyond the drain deadline, how long the primary waits for workers to exit before killing them. */
const exitGraceMs = 5_000;

interface Member {
  readonly worker: Worker;
  /** The accepted config it serves (null until it serves). */
  generation: number | null;
  /** Requests waiting for the worker's answer, by id; each is answered with its fallback if the worker goes away. */
  readonly pending: Map<number, { answer: (value: unknown) => void; gone: (why: string) => void }>;
}

/**
 * The cluster primary (workers > 1). It serves no traffic; it
 * - validates the config and hands every worker the exact text it validated,
 *   so workers never read a file on their own: a replacement worker starts on
 *   the last accepted config, whatever the file holds now;
 * - owns the session-ticket keys and gives them to every worker;
 * - restarts a worker that exits, with backoff when crashes repeat;
 * - takes reloads (SIGHUP, control socket) to every serving worker; a worker
 *   that fails to apply one is replaced, so all converge on one config;
 * - on SIGTERM/SIGINT lets every worker drain, then exits.
 */
export async function runPrimary(source: FileSource, initial: { config: Config; text: string }, log: Logger): Promise<{ port: number }> {
  let accepted = { ...initial, generation: 1 };
  let denyList: readonly DenyEntry[] = readDenyList(accepted.config.dataDir);
  let apiKeys: readonly ApiKeyRecord[] = readApiKeys(accepted.config.dataDir);
  const tickets = new TicketKeyRing();
  tickets.start(accepted.config.tls.ticketKeyRotationMs);
  const members = new Map<Worker, Member>();
  const send = (worker: Worker, message: ToWorker) => {
    if (worker.isConnected()) worker.send(message);
  };
  tickets.onRotate = () => {
    const keys = tickets.export().toString('base64');
    for (const w of members.keys()) send(w, { type: 'tickets', keys });
  };

  let stopping = false;
  const crashes: number[] = [];
  let nextRequestId = 1;
  const metrics = new SupervisorMetrics();

  /** Sends one worker a request and resolves with its answer, or with `fallback(why)` when it does not answer in time or exits: never hangs. */
  const ask = <T>(member: Member, request: (id: number) => ToWorker, timeoutMs: number, fallback: (why: string) => T): Promise<T> =>
    new Promise((resolve) => {
      const id = nextRequestId++;
      const timer = setTimeout(() => done(fallback('did not answer in time')), timeoutMs);
      const done = (value: T) => {
        clearTimeout(timer);
        member.pending.delete(id);
        resolve(value);
      };
      member.pending.set(id, { answer: (value) => done(value as T), gone: (why) => done(fallback(why)) });
      send(member.worker, request(id));
    });
  const serving = () => [...members.values()].filter((m) => m.generation !== null);

  /** The instance's metrics: the primary's own plus every serving worker's (one that does not answer is left out), counters summed. */
  const scrape = async () => {
    const workers = await Promise.all(serving().map((m) => ask<WorkerMetrics>(m, (id) => ({ type: 'metrics', id }), workerScrapeTimeoutMs, () => [])));
    return AggregatorRegistry.aggregate([await metrics.registry.getMetricsAsJSON(), ...workers]).metrics();
  };

  /** Asks one serving worker to apply `text`. */
  const reloadWorker = async (member: Member, text: string, generation: number): Promise<ReloadResult> => {
    const result = await ask<ReloadResult>(member, (id) => ({ type: 'reload', id, text, generation }), workerReloadTimeoutMs, (why) => ({ ok: false, code: 'PCL_RELOAD_FAILED', message: `worker ${member.worker.id} ${why}` }));
    if (result.ok) member.generation = generation;
    return result;
  };

  /**
   * Sends `request` to each of `to` and resolves with their answers (done's
   * `closed`) once all have carried it out; rejects with PCL_WORKER_FAILED
   * naming the workers that did not confirm (timed out or exited).
   */
  const askAll = async (to: readonly Member[], request: (id: number) => ToWorker): Promise<number[]> => {
    const answers = await Promise.all(to.map((m) => ask<number | string>(m, request, workerScrapeTimeoutMs, (why) => `worker ${m.worker.id} ${why}`)));
    const missing = answers.filter((a): a is string => typeof a === 'string');
    if (missing.length > 0) throw new PortcullisError('PCL_WORKER_FAILED', `not confirmed by ${missing.join(', ')}`);
    return answers as number[];
  };

  let acme: AcmeManager | null = null;
  /** Puts ACME challenge answers in place on every worker; resolves once all have them (or could not). */
  const publishChallenges = async (set: AcmeChallengeSet): Promise<void> => {
    await askAll([...members.values()], (id) => ({ type: 'acme-challenges', id, set })).catch((err: Error) =>
      log.warn({ event: 'acme_challenges_unconfirmed', error: err.message }, `ACME challenge answers ${err.message}; the validation may fail there and is then retried`),
    );
  };

  /** Forks one worker; resolves with its ports once it serves, rejects with its start error. */
  const fork = (): Promise<{ port: number; httpPort: number | null }> =>
    new Promise((resolve, reject) => {
      const worker = cluster.fork();
      const member: Member = { worker, generation: null, pending: new Map() };
      members.set(worker, member);
      worker.on('message', (message: ToPrimary) => {
        switch (message.type) {
          case 'hello':
            send(worker, { type: 'start', keys: tickets.export().toString('base64'), text: accepted.text, generation: accepted.generation, denyList, apiKeys, challenges: acme?.challenges() ?? noChallenges });
            return;
          case 'ready':
            member.generation = message.generation;
            log.info({ event: 'worker_ready', worker: worker.id, workerPid: worker.process.pid }, `worker ${worker.id} serving`);
            // a reload was accepted while it started: bring it up to date
            if (message.generation < accepted.generation) void reloadWorker(member, accepted.text, accepted.generation);
            resolve({ port: message.port, httpPort: message.httpPort });
            return;
          case 'failed':
            reject(new PortcullisError('PCL_WORKER_FAILED', `worker ${worker.id} could not start: ${message.message}`));
            return;
          case 'reloaded':
            member.pending.get(message.id)?.answer(message.result);
            return;
          case 'metrics':
            member.pending.get(message.id)?.answer(message.metrics);
            return;
          case 'done':
            member.pending.get(message.id)?.answer(message.closed);
            return;
        }
      });
      worker.once('exit', (code, signal) => {
        members.delete(worker);
        for (const request of member.pending.values()) request.gone('exited');
        reject(new PortcullisError('PCL_WORKER_FAILED', `worker ${worker.id} exited (${signal ?? code}) before serving`));
        if (stopping) return;
        const now = Date.now();
        while (crashes.length > 0 && (crashes[0] as number) < now - crashWindowMs) crashes.shift();
        crashes.push(now);
        const delay = crashes.length <= 1 ? 0 : Math.min(maxRestartDelayMs, 1000 * 2 ** (crashes.length - 2));
        log.error(
          { event: 'worker_exited', worker: worker.id, workerPid: worker.process.pid, code, signal, restartInMs: delay },
          `worker ${worker.id} exited (${signal ?? code}); starting a new one`,
        );
        setTimeout(() => {
          if (!stopping) fork().catch((err: Error) => log.error({ event: 'worker_failed', error: err.message }, 'a replacement worker failed to start'));
        }, delay);
      });
    });

  const shutdownWorkers = () => {
    stopping = true;
    for (const w of members.keys()) w.kill();
    tickets.stop();
  };

  let port: number;
  let httpPort: number | null;
  try {
    const ready = await Promise.all(Array.from({ length: accepted.config.workers }, () => fork()));
    ({ port, httpPort } = ready[0] as { port: number; httpPort: number | null });
  } catch (err) {
    shutdownWorkers();
    throw err;
  }

  let candidate: { config: Config; text: string } | null = null;
  // certificate files replaced on disk (renewal tooling, cert-manager) reach every worker through a reload
  const watcher = new FileWatcher((files) => {
    log.info({ event: 'certificate_files_changed', files }, 'certificate files changed on disk; reloading');
    void reloader.reload('certificate files changed');
  });
  const reloader = new Reloader(
    source.description,
    async () => {
      candidate = await source.loadWithText();
      return candidate.config;
    },
    async (next) => {
      const { text } = candidate as { text: string };
      const generation = accepted.generation + 1;
      const serving = [...members.values()].filter((m) => m.generation !== null);
      const results = await Promise.all(serving.map(async (m) => ({ member: m, result: await reloadWorker(m, text, generation) })));
      const applied = results.filter((r) => r.result.ok);
      const failed = results.filter((r) => !r.result.ok);
      if (applied.length === 0 && failed.length > 0) {
        throw new PortcullisError('PCL_RELOAD_FAILED', failed.map((f) => `worker ${f.member.worker.id}: ${f.result.message}`).join('; '));
      }
      if (next.tls.ticketKeyRotationMs !== accepted.config.tls.ticketKeyRotationMs) tickets.start(next.tls.ticketKeyRotationMs);
      if (next.workers !== accepted.config.workers) log.warn({ event: 'workers_unchanged', running: members.size, configured: next.workers }, 'a new worker count applies at the next start');
      accepted = { config: next, text, generation };
      await watcher.watch(watchedFilesOf(next));
      acme?.apply(next);
      for (const f of failed) {
        log.error({ event: 'worker_replaced', worker: f.member.worker.id, error: f.result.message }, `worker ${f.member.worker.id} could not apply the reload; replacing it`);
        f.member.worker.kill();
      }
    },
    log,
    metrics,
    () => accepted.config,
  );
  // the stores under dataDir as every worker keeps them in force (a replacement worker starts with them), with the changes a command could not save on top
  const denyListSync = new StoreSync(
    () => denyListStore(accepted.config.dataDir),
    denyList,
    async (entries) => {
      denyList = entries;
      const closed = await askAll([...members.values()], (id) => ({ type: 'deny-list', id, entries }));
      return `applied by ${closed.length} workers, ${closed.reduce((a, b) => a + b, 0)} open connection(s) closed`;
    },
    log,
  );
  const apiKeySync = new StoreSync(
    () => apiKeyStore(accepted.config.dataDir),
    apiKeys,
    async (records) => {
      apiKeys = records;
      const answers = await askAll([...members.values()], (id) => ({ type: 'api-keys', id, records }));
      return `applied by ${answers.length} workers, in force for every request from now on`;
    },
    log,
  );
  /** Before every control request: another attempt to save what commands could not. */
  const retryUnsaved = async () => {
    await Promise.all([denyListSync.retry(), apiKeySync.retry()]);
  };
  let control: { close(): Promise<void> } | null = null;
  let admin: AdminListener | null = null;
  try {
    control = await openControlSocket(accepted.config.dataDir, {
      reload: () => reloader.reload('control socket'),
      denyList: (change) => denyListSync.sync(change),
      apiKeys: (change) => apiKeySync.sync(change),
      flush: () =>
        askAll(serving(), (id) => ({ type: 'flush', id })).then(
          (answers): ReloadResult => ({ ok: true, message: `summaries written by ${answers.length} workers` }),
          (err: PortcullisError): ReloadResult => ({ ok: false, code: err.code, message: `summaries ${err.message}` }),
        ),
    }, retryUnsaved);
    admin = await openAdmin(accepted.config, log, metrics, scrape);
  } catch (err) {
    watcher.close();
    shutdownWorkers();
    await control?.close();
    throw err;
  }
  await watcher.watch(watchedFilesOf(accepted.config));
  const stopRenewal = scheduleInternalRenewal(renewalOf(source, admin), log);
  // once this instance owns the dataDir (the control socket): only then may it order certificates into it
  acme = startAcme(accepted.config, log, metrics, publishChallenges, () => reloader.reload('acme certificate issued'));
  // handlers first: whoever reads "listening" may signal at once
  process.on('SIGHUP', () => void reloader.reload('SIGHUP'));
  onStopSignals(log, async (signal) => {
    watcher.close();
    stopRenewal();
    acme?.stop();
    await reloader.stop();
    stopping = true;
    const drainMs = accepted.config.timeouts.drainMs;
    log.info({ event: 'stopping', signal, drainMs, workers: members.size }, `received ${signal}: workers finish in-flight requests (at most ${drainMs} ms)`);
    tickets.stop();
    const allExited = new Promise<void>((resolve) => {
      if (members.size === 0) resolve();
      cluster.on('exit', () => members.size === 0 && resolve());
    });
    for (const w of members.keys()) send(w, { type: 'drain' });
    const killer = setTimeout(() => {
      for (const w of members.keys()) w.process.kill('SIGKILL');
    }, drainMs + exitGraceMs);
    await Promise.all([allExited, control?.close(), admin?.close(), denyListSync.stop(), apiKeySync.stop()]);
    clearTimeout(killer);
    log.info({ event: 'stopped' }, 'stopped');
  });
  const https = formatHostPort(accepted.config.listen.https.host, port);
  const http = accepted.config.listen.http && httpPort !== null ? formatHostPort(accepted.config.listen.http.host, httpPort) : null;
  log.info(
    { event: 'listening', https, http, config: source.description, workers: members.size },
    `serving HTTPS on ${https}${http ? `, redirecting HTTP on ${http}` : ''}, with ${members.size} workers`,
  );

  return { port };
}
