import type { ApiKeyRecord } from '../access/index.js';
import cluster from 'node:cluster';
import { collectDefaultMetrics } from 'prom-client';
import { PortcullisError } from '../errors.js';
import { startPortcullis, type Portcullis } from '../instance/index.js';
import { type AccessLog } from '../telemetry/index.js';
import { createLogger, type Level } from '../observe/index.js';
import { TicketKeyRing } from '../tls/index.js';
import { accessLogFor, reopenAccessLog } from './access-log-for.js';
import type { FileSource } from './config-source.js';
import type { ToPrimary, ToWorker } from './messages.js';
import type { ReloadResult } from './reloader.js';
import type { DenyEntry } from '../trust/index.js';
import type { AcmeChallengeSet } from '../acme/index.js';

function send(message: ToPrimary): void {
  process.send?.(message);
}

/** Confirms a request to the primary; `closed`: the open connections a deny list closed. */
const done = (id: number, closed = 0): void => send({ type: 'done', id, closed });

/**
 * A cluster worker: serves the config text its primary validated, with the
 * primary's session-ticket keys (so a session resumes on any worker); reloads
 * and drains when the primary says so, and drains on its own when the
 * primary disappears. Signals from a terminal reach the whole process group;
 * the primary coordinates, so a worker ignores SIGINT and SIGHUP.
 */
export async function runWorker(source: FileSource, levelOverride: Level | undefined): Promise<void> {
  let log = createLogger(levelOverride ?? 'info');
  process.on('SIGINT', () => {});
  process.on('SIGHUP', () => {});
  const tickets = new TicketKeyRing();
  let proxy: Portcullis | null = null;
  let access: AccessLog | null = null;
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    void (async () => {
      if (proxy) await proxy.drain(proxy.config.timeouts.drainMs);
      await access?.flush();
      process.exit(0);
    })();
  };

  const reload = async (text: string): Promise<ReloadResult> => {
    if (!proxy || stopping) return { ok: false, code: 'PCL_RELOAD_FAILED', message: `worker ${process.pid} is ${stopping ? 'stopping' : 'not serving yet'}` };
    try {
      await proxy.reload(source.fromText(text));
    } catch (err) {
      return { ok: false, code: err instanceof PortcullisError ? err.code : 'PCL_RELOAD_FAILED', message: (err as Error).message };
    }
    reopenAccessLog(access, log);
    return { ok: true, message: 'reloaded' };
  };

  type StartOrder = Extract<ToWorker, { type: 'start' }>;
  let started!: (start: StartOrder) => void;
  const startOrder = new Promise<StartOrder>((resolve) => (started = resolve));
  /** A deny list or ACME challenges that arrive while the worker starts apply once it serves. */
  let denyList: readonly DenyEntry[] | null = null;
  let apiKeys: readonly ApiKeyRecord[] | null = null;
  let challenges: AcmeChallengeSet | null = null;
  process.on('message', (message: ToWorker) => {
    switch (message.type) {
      case 'start':
        tickets.import(Buffer.from(message.keys, 'base64'));
        started(message);
        return;
      case 'tickets':
        tickets.import(Buffer.from(message.keys, 'base64'));
        return;
      case 'reload':
        void reload(message.text).then((result) => send({ type: 'reloaded', id: message.id, result }));
        return;
      case 'deny-list':
        if (proxy) return done(message.id, proxy.setDenyList(message.entries));
        denyList = message.entries;
        return done(message.id);
      case 'api-keys':
        if (proxy) proxy.setApiKeys(message.records);
        else apiKeys = message.records;
        return done(message.id);
      case 'acme-challenges':
        if (proxy) proxy.setAcmeChallenges(message.set);
        else challenges = message.set;
        return done(message.id);
      case 'metrics':
        void (proxy ? proxy.metrics.registry.getMetricsAsJSON() : Promise.resolve([])).then((metrics) => send({ type: 'metrics', id: message.id, metrics }));
        return;
      case 'flush':
        void (proxy ? proxy.flushSummaries() : Promise.resolve()).then(() => done(message.id));
        return;
      case 'drain':
        stop();
        return;
    }
  });
  process.on('disconnect', stop);
  process.on('SIGTERM', stop);
  send({ type: 'hello' });
  const start = await startOrder;
  const { text, generation } = start;

  try {
    const config = source.fromText(text);
    log = createLogger(levelOverride ?? config.log.level);
    access = accessLogFor(config, log);
    const initial = denyList ?? start.denyList;
    const initialKeys = apiKeys ?? start.apiKeys;
    proxy = await startPortcullis(config, log, { tickets, accessLog: access, denyList: initial, apiKeys: initialKeys, acmeChallenges: challenges ?? start.challenges, processName: `worker-${cluster.worker?.id ?? process.pid}` });
    collectDefaultMetrics({ register: proxy.metrics.registry });
    // a list that arrived while the instance started
    if (denyList && denyList !== initial) proxy.setDenyList(denyList);
    if (apiKeys && apiKeys !== initialKeys) proxy.setApiKeys(apiKeys);
    // challenges that changed while the instance started
    if (challenges) proxy.setAcmeChallenges(challenges);
  } catch (err) {
    send({ type: 'failed', code: err instanceof PortcullisError ? err.code : 'PCL_WORKER_FAILED', message: (err as Error).message });
    process.exit(3);
  }
  send({ type: 'ready', generation, port: proxy.address.port, httpPort: proxy.httpAddress?.port ?? null });
}
