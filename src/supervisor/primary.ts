import cluster, { type Worker } from 'node:cluster';
import { formatHostPort, type Config } from '../config/index.js';
import { PortcullisError } from '../errors.js';
import type { Logger } from '../telemetry/index.js';
import { TicketKeyRing } from '../tls/index.js';
import type { ConfigSource } from './config-source.js';
import { openControlSocket } from './control-socket.js';
import type { ToPrimary, ToWorker } from './messages.js';
import { Reloader, type ReloadResult } from './reloader.js';

/** A worker that dies again within this long of starting counts towards crash backoff. */
const crashWindowMs = 60_000;
const maxRestartDelayMs = 30_000;
/** Beyond the drain deadline, how long the primary waits for workers to exit before killing them. */
const exitGraceMs = 5_000;

/**
 * The cluster primary (workers > 1): it validates the config, owns the
 * session-ticket keys and hands them to every worker, restarts a worker that
 * crashes (with backoff when crashes repeat), takes reloads (SIGHUP, control
 * socket) to every worker after validating the config itself, and on
 * SIGTERM/SIGINT lets every worker drain before exiting. It serves no traffic.
 */
export async function runPrimary(source: ConfigSource, initial: Config, log: Logger): Promise<{ port: number }> {
  let config = initial;
  const tickets = new TicketKeyRing();
  tickets.start(config.tls.ticketKeyRotationMs);
  const keys = (): ToWorker => ({ type: 'tickets', keys: tickets.export().toString('base64') });
  const workers = new Set<Worker>();
  const send = (worker: Worker, message: ToWorker) => worker.isConnected() && worker.send(message);
  tickets.onRotate = () => {
    for (const w of workers) send(w, keys());
  };

  let stopping = false;
  const crashes: number[] = [];
  let nextReloadId = 1;
  const pendingReloads = new Map<number, (result: ReloadResult) => void>();

  /** Forks one worker; resolves with its ports once it serves, rejects with its start error. */
  const fork = (): Promise<{ port: number; httpPort: number | null }> =>
    new Promise((resolve, reject) => {
      const worker = cluster.fork();
      workers.add(worker);
      worker.on('message', (message: ToPrimary) => {
        switch (message.type) {
          case 'hello':
            send(worker, keys());
            return;
          case 'ready':
            log.info({ event: 'worker_ready', worker: worker.id, pid: worker.process.pid }, `worker ${worker.id} serving`);
            resolve({ port: message.port, httpPort: message.httpPort });
            return;
          case 'failed':
            reject(new PortcullisError('PCL_WORKER_FAILED', `worker ${worker.id} could not start: ${message.message}`));
            return;
          case 'reloaded':
            pendingReloads.get(message.id)?.(message.result);
            return;
        }
      });
      worker.once('exit', (code, signal) => {
        workers.delete(worker);
        reject(new PortcullisError('PCL_WORKER_FAILED', `worker ${worker.id} exited (${signal ?? code}) before serving`));
        if (stopping) return;
        const now = Date.now();
        while (crashes.length > 0 && (crashes[0] as number) < now - crashWindowMs) crashes.shift();
        crashes.push(now);
        const delay = crashes.length <= 1 ? 0 : Math.min(maxRestartDelayMs, 1000 * 2 ** (crashes.length - 2));
        log.error({ event: 'worker_exited', worker: worker.id, pid: worker.process.pid, code, signal, restartInMs: delay }, `worker ${worker.id} exited (${signal ?? code}); starting a new one`);
        setTimeout(() => {
          if (!stopping) fork().catch((err: Error) => log.error({ event: 'worker_failed', error: err.message }, 'a replacement worker failed to start'));
        }, delay);
      });
    });

  let port: number;
  let httpPort: number | null;
  try {
    const ready = await Promise.all(Array.from({ length: config.workers }, () => fork()));
    ({ port, httpPort } = ready[0] as { port: number; httpPort: number | null });
  } catch (err) {
    stopping = true;
    for (const w of workers) w.kill();
    tickets.stop();
    throw err;
  }

  /** Asks one worker to reload and waits for its answer. */
  const reloadWorker = (worker: Worker): Promise<ReloadResult> =>
    new Promise((resolve) => {
      const id = nextReloadId++;
      pendingReloads.set(id, (result) => {
        pendingReloads.delete(id);
        resolve(result);
      });
      send(worker, { type: 'reload', id });
    });

  const reloader = new Reloader(
    source,
    async (next) => {
      const results = await Promise.all([...workers].map(async (w) => ({ worker: w.id, result: await reloadWorker(w) })));
      const failed = results.filter((r) => !r.result.ok);
      if (next.tls.ticketKeyRotationMs !== config.tls.ticketKeyRotationMs) tickets.start(next.tls.ticketKeyRotationMs);
      if (next.workers !== config.workers) log.warn({ event: 'workers_unchanged', running: workers.size, configured: next.workers }, 'a new worker count applies at the next start');
      config = next;
      if (failed.length > 0) {
        throw new PortcullisError('PCL_RELOAD_FAILED', failed.map((f) => `worker ${f.worker}: ${f.result.message}`).join('; '));
      }
    },
    log,
  );
  let control: { close(): Promise<void> };
  try {
    control = await openControlSocket(config.dataDir, { reload: () => reloader.reload('control socket') });
  } catch (err) {
    stopping = true;
    for (const w of workers) w.kill();
    tickets.stop();
    throw err;
  }
  const https = formatHostPort(config.listen.https.host, port);
  const http = config.listen.http && httpPort !== null ? formatHostPort(config.listen.http.host, httpPort) : null;
  log.info(
    { event: 'listening', https, http, config: source.description, workers: workers.size },
    `serving HTTPS on ${https}${http ? `, redirecting HTTP on ${http}` : ''}, with ${workers.size} workers`,
  );

  process.on('SIGHUP', () => void reloader.reload('SIGHUP'));
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    const drainMs = config.timeouts.drainMs;
    log.info({ event: 'stopping', signal, drainMs, workers: workers.size }, `received ${signal}: workers finish in-flight requests (at most ${drainMs} ms)`);
    tickets.stop();
    for (const w of workers) send(w, { type: 'drain' });
    const killer = setTimeout(() => {
      for (const w of workers) w.process.kill('SIGKILL');
    }, drainMs + exitGraceMs);
    const done = async () => {
      if (workers.size > 0) return;
      clearTimeout(killer);
      await control.close();
      log.info({ event: 'stopped' }, 'stopped');
      process.exit(0);
    };
    cluster.on('exit', () => void done());
    void done();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  return { port };
}
