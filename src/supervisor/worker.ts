import cluster from 'node:cluster';
import { PortcullisError } from '../errors.js';
import { createLogger, type Level, type Logger } from '../observe/index.js';
import type { RedisLink } from '../state/index.js';
import { TicketKeyRing } from '../tls/index.js';
import type { FileSource } from './config-source.js';
import type { DataPlane, PlaneState } from './data-plane.js';
import { openCluster } from './cluster-link.js';
import { startInProcessPlane } from './in-process-plane.js';
import type { Answer, Ask, ToPrimary, ToWorker, WorkerOps } from './messages.js';

function send(message: ToPrimary): void {
  process.send?.(message);
}

type StartOrder = Extract<ToWorker, { type: 'start' }>;

/**
 * A cluster worker: serves the config text its primary validated, with the
 * primary's session-ticket keys (so a session resumes on any worker), in an
 * in-process data plane that answers the primary's requests; drains when the
 * primary says so, and on its own when the primary disappears. Signals from
 * a terminal reach the whole process group; the primary coordinates, so a
 * worker ignores SIGINT and SIGHUP.
 */
export async function runWorker(source: FileSource, levelOverride: Level | undefined): Promise<void> {
  process.on('SIGINT', () => {});
  process.on('SIGHUP', () => {});
  const worker = new Worker(source, createLogger(levelOverride ?? 'info'));
  let started!: (start: StartOrder) => void;
  const startOrder = new Promise<StartOrder>((resolve) => (started = resolve));
  process.on('message', (message: ToWorker) => {
    switch (message.type) {
      case 'start':
        worker.tickets.import(Buffer.from(message.keys, 'base64'));
        started(message);
        return;
      case 'tickets':
        worker.tickets.import(Buffer.from(message.keys, 'base64'));
        return;
      case 'drain':
        worker.stop();
        return;
      case 'ask':
        void worker.answer(message).then(send);
        return;
    }
  });
  process.on('disconnect', () => worker.stop());
  process.on('SIGTERM', () => worker.stop());
  send({ type: 'hello' });
  const start = await startOrder;
  try {
    await worker.serve(start, levelOverride);
  } catch (err) {
    send({ type: 'failed', code: err instanceof PortcullisError ? err.code : 'PCL_WORKER_FAILED', message: (err as Error).message });
    process.exit(3);
  }
  const { port, httpPort } = (worker.plane as DataPlane).listening;
  send({ type: 'ready', generation: start.generation, port, httpPort });
}

/** The state a worker is asked to keep in force, by the request that carries it. */
type Held = { -readonly [K in keyof PlaneState]?: PlaneState[K] };

class Worker {
  readonly tickets = new TicketKeyRing();
  plane: DataPlane | null = null;
  /** State that arrived before the plane serves: applied once it does (the latest of each kind). */
  #held: Held = {};
  #stopping = false;
  /** timeouts.drain of the config served now. */
  #drainMs = 0;
  /** This worker's own connection to the cluster's Redis, with `state.backend: redis`. */
  #cluster: RedisLink | null = null;

  constructor(
    private readonly source: FileSource,
    private log: Logger,
  ) {}

  async serve(start: StartOrder, levelOverride: Level | undefined): Promise<void> {
    const config = this.source.fromText(start.text);
    this.log = createLogger(levelOverride ?? config.log.level);
    this.#drainMs = config.timeouts.drainMs;
    const state = { ...start.state, ...this.#held };
    this.#held = {};
    this.#cluster = await openCluster(config, this.log);
    const plane = await startInProcessPlane({ config, text: start.text, generation: start.generation }, state, this.log, {
      tickets: this.tickets,
      processName: `worker-${cluster.worker?.id ?? process.pid}`,
      processMetrics: true,
      cluster: this.#cluster,
    });
    // what arrived while the instance started
    const held = this.#held;
    if (held.denyList) await plane.setDenyList(held.denyList);
    if (held.apiKeys) await plane.setApiKeys(held.apiKeys);
    if (held.challenges) await plane.setAcmeChallenges(held.challenges);
    this.plane = plane;
  }

  async answer(ask: Ask): Promise<Answer> {
    try {
      return { type: 'answer', id: ask.id, ok: true, value: await this.#perform(ask) };
    } catch (err) {
      return { type: 'answer', id: ask.id, ok: false, code: err instanceof PortcullisError ? err.code : 'PCL_WORKER_FAILED', message: (err as Error).message };
    }
  }

  async #perform(ask: Ask): Promise<WorkerOps[Ask['op']]['answer']> {
    const plane = this.plane;
    switch (ask.op) {
      case 'apply':
        return this.#apply(plane, ask.arg);
      case 'denyList':
        if (!plane) this.#held.denyList = ask.arg;
        return { closed: plane ? (await plane.setDenyList(ask.arg)).closed : 0 };
      case 'apiKeys':
        if (plane) await plane.setApiKeys(ask.arg);
        else this.#held.apiKeys = ask.arg;
        return null;
      case 'acmeChallenges':
        if (plane) await plane.setAcmeChallenges(ask.arg);
        else this.#held.challenges = ask.arg;
        return null;
      case 'flush':
        await plane?.flush();
        return null;
      case 'metrics':
        return plane ? ((await plane.metrics())[0] ?? []) : [];
    }
  }

  async #apply(plane: DataPlane | null, next: WorkerOps['apply']['arg']): Promise<null> {
    if (!plane || this.#stopping) throw new PortcullisError('PCL_RELOAD_FAILED', `worker ${process.pid} is ${this.#stopping ? 'stopping' : 'not serving yet'}`);
    const config = this.source.fromText(next.text);
    await plane.apply({ config, ...next });
    this.#drainMs = config.timeouts.drainMs;
    return null;
  }

  stop(): void {
    if (this.#stopping) return;
    this.#stopping = true;
    void (async () => {
      if (this.plane) await this.plane.drain(this.#drainMs);
      await this.#cluster?.close();
      process.exit(0);
    })();
  }
}
