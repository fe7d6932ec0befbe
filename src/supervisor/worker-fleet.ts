import cluster, { type Worker } from 'node:cluster';
import { formatHostPort } from '../config/index.js';
import { PortcullisError } from '../errors.js';
import type { Logger } from '../observe/index.js';
import { TicketKeyRing } from '../tls/index.js';
import type { ConfigGeneration, DataPlane, Listening, PlaneState, RegistryMetrics } from './data-plane.js';
import type { Ask, ToPrimary, ToWorker, WorkerOp, WorkerOps } from './messages.js';

/** A worker that dies again within this long of the previous death counts towards crash backoff. */
const crashWindowMs = 60_000;
const maxRestartDelayMs = 30_000;
/** How long a worker may take to apply a config before it counts as failed. */
const workerReloadTimeoutMs = 60_000;
/** How long any other request waits for a worker's answer (a scrape leaves out a worker that does not answer). */
const workerAnswerTimeoutMs = 5_000;
/** Beyond the drain deadline, how long the primary waits for workers to exit before killing them. */
const exitGraceMs = 5_000;

interface Member {
  readonly worker: Worker;
  /** The accepted config it serves (null until it serves). */
  generation: number | null;
  /** Requests waiting for the worker's answer, by id. */
  readonly pending: Map<number, { answer: (message: Extract<ToPrimary, { type: 'answer' }>) => void; gone: (why: string) => void }>;
}

/** A worker's answer to one request: its value, or why there is none (the worker's error, a timeout, an exit). */
type Outcome<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly code: string; readonly message: string };

/**
 * Serves with `config.workers` cluster workers (the primary serves no
 * traffic). Every worker gets the exact config text the primary validated,
 * so a replacement starts on the last accepted config whatever the file
 * holds now; the primary owns the session-ticket keys and gives them to
 * every worker; a worker that exits is replaced, with backoff when crashes
 * repeat; a worker that cannot apply a reload is replaced, so all converge
 * on one config. Resolves once every worker serves.
 */
export async function startWorkerFleet(initial: ConfigGeneration, state: PlaneState, log: Logger, tickets: TicketKeyRing | null = null): Promise<DataPlane> {
  const fleet = new WorkerFleet(initial, state, log, tickets);
  let ready: { port: number; httpPort: number | null };
  try {
    [ready] = (await Promise.all(Array.from({ length: initial.config.workers }, () => fleet.fork()))) as [typeof ready];
  } catch (err) {
    fleet.close();
    throw err;
  }
  const { listen } = initial.config;
  const http = listen.http && ready.httpPort !== null ? formatHostPort(listen.http.host, ready.httpPort) : null;
  return fleet.plane({ port: ready.port, httpPort: ready.httpPort, https: formatHostPort(listen.https.host, ready.port), http, workers: fleet.size });
}

class WorkerFleet {
  readonly #members = new Map<Worker, Member>();
  /** The keys every worker gets: rotated here, or the cluster's (`state.backend: redis`), which the caller keeps current. */
  readonly #tickets: TicketKeyRing;
  readonly #ownsTickets: boolean;
  readonly #crashes: number[] = [];
  #accepted: ConfigGeneration & { readonly text: string };
  #state: PlaneState;
  #stopping = false;
  #nextId = 1;

  constructor(
    initial: ConfigGeneration,
    state: PlaneState,
    private readonly log: Logger,
    tickets: TicketKeyRing | null,
  ) {
    if (initial.text === null) throw new PortcullisError('PCL_WORKER_FAILED', 'workers need a config file: they are handed its text');
    this.#accepted = initial as ConfigGeneration & { readonly text: string };
    this.#state = state;
    this.#tickets = tickets ?? new TicketKeyRing();
    this.#ownsTickets = tickets === null;
    if (this.#ownsTickets) this.#tickets.start(initial.config.tls.ticketKeyRotationMs);
    this.#tickets.onRotate = () => {
      const keys = this.#tickets.export().toString('base64');
      for (const w of this.#members.keys()) this.#send(w, { type: 'tickets', keys });
    };
  }

  get size(): number {
    return this.#members.size;
  }

  plane(listening: Listening): DataPlane {
    const all = () => [...this.#members.values()];
    return {
      listening,
      apply: (next) => this.#apply(next),
      setDenyList: async (entries) => {
        this.#state = { ...this.#state, denyList: entries };
        const answers = await this.#askAll(all(), 'denyList', entries);
        return { processes: answers.length, closed: answers.reduce((n, a) => n + a.closed, 0) };
      },
      setApiKeys: async (records) => {
        this.#state = { ...this.#state, apiKeys: records };
        return { processes: (await this.#askAll(all(), 'apiKeys', records)).length };
      },
      setAcmeChallenges: async (set) => {
        this.#state = { ...this.#state, challenges: set };
        await this.#askAll(all(), 'acmeChallenges', set).catch((err: Error) =>
          this.log.warn({ event: 'acme_challenges_unconfirmed', error: err.message }, `ACME challenge answers ${err.message}; the validation may fail there and is then retried`),
        );
      },
      flush: async () => ({ processes: (await this.#askAll(this.#serving(), 'flush', null)).length }),
      metrics: () => Promise.all(this.#serving().map(async (m) => this.#valueOr(await this.#ask(m, 'metrics', null, workerAnswerTimeoutMs), [] as RegistryMetrics))),
      drain: (deadlineMs) => this.#drain(deadlineMs),
      close: async () => this.close(),
    };
  }

  /** Forks one worker; resolves with its ports once it serves, rejects with its start error. */
  fork(): Promise<{ port: number; httpPort: number | null }> {
    return new Promise((resolve, reject) => {
      const worker = cluster.fork();
      const member: Member = { worker, generation: null, pending: new Map() };
      this.#members.set(worker, member);
      worker.on('message', (message: ToPrimary) => {
        switch (message.type) {
          case 'hello':
            this.#send(worker, { type: 'start', keys: this.#tickets.export().toString('base64'), text: this.#accepted.text, generation: this.#accepted.generation, state: this.#state });
            return;
          case 'ready':
            member.generation = message.generation;
            this.log.info({ event: 'worker_ready', worker: worker.id, workerPid: worker.process.pid }, `worker ${worker.id} serving`);
            // a reload was accepted while it started: bring it up to date
            if (message.generation < this.#accepted.generation) void this.#applyTo(member, this.#accepted);
            resolve({ port: message.port, httpPort: message.httpPort });
            return;
          case 'failed':
            reject(new PortcullisError('PCL_WORKER_FAILED', `worker ${worker.id} could not start: ${message.message}`));
            return;
          case 'answer':
            member.pending.get(message.id)?.answer(message);
            return;
        }
      });
      worker.once('exit', (code, signal) => {
        this.#members.delete(worker);
        for (const request of member.pending.values()) request.gone('exited');
        reject(new PortcullisError('PCL_WORKER_FAILED', `worker ${worker.id} exited (${signal ?? code}) before serving`));
        if (!this.#stopping) this.#replace(worker, code, signal);
      });
    });
  }

  /** Stops every worker at once. */
  close(): void {
    this.#stopping = true;
    for (const w of this.#members.keys()) w.kill();
    this.#tickets.stop();
  }

  #replace(worker: Worker, code: number | null, signal: string | null): void {
    const now = Date.now();
    while (this.#crashes.length > 0 && (this.#crashes[0] as number) < now - crashWindowMs) this.#crashes.shift();
    this.#crashes.push(now);
    const delay = this.#crashes.length <= 1 ? 0 : Math.min(maxRestartDelayMs, 1000 * 2 ** (this.#crashes.length - 2));
    this.log.error({ event: 'worker_exited', worker: worker.id, workerPid: worker.process.pid, code, signal, restartInMs: delay }, `worker ${worker.id} exited (${signal ?? code}); starting a new one`);
    setTimeout(() => {
      if (!this.#stopping) this.fork().catch((err: Error) => this.log.error({ event: 'worker_failed', error: err.message }, 'a replacement worker failed to start'));
    }, delay);
  }

  /** Every serving worker applies `next`; refused only when none could. A worker that could not is replaced. */
  async #apply(next: ConfigGeneration): Promise<void> {
    if (next.text === null) throw new PortcullisError('PCL_RELOAD_FAILED', 'workers need the config text');
    const generation = next as ConfigGeneration & { readonly text: string };
    const results = await Promise.all(this.#serving().map(async (member) => ({ member, outcome: await this.#applyTo(member, generation) })));
    const failed = results.filter((r) => !r.outcome.ok);
    if (failed.length > 0 && failed.length === results.length) {
      throw new PortcullisError('PCL_RELOAD_FAILED', failed.map((f) => `worker ${f.member.worker.id}: ${(f.outcome as { message: string }).message}`).join('; '));
    }
    const before = this.#accepted.config;
    if (this.#ownsTickets && next.config.tls.ticketKeyRotationMs !== before.tls.ticketKeyRotationMs) this.#tickets.start(next.config.tls.ticketKeyRotationMs);
    if (next.config.workers !== before.workers) this.log.warn({ event: 'workers_unchanged', running: this.#members.size, configured: next.config.workers }, 'a new worker count applies at the next start');
    this.#accepted = generation;
    for (const f of failed) {
      this.log.error({ event: 'worker_replaced', worker: f.member.worker.id, error: (f.outcome as { message: string }).message }, `worker ${f.member.worker.id} could not apply the reload; replacing it`);
      f.member.worker.kill();
    }
  }

  async #applyTo(member: Member, next: ConfigGeneration & { readonly text: string }): Promise<Outcome<null>> {
    const outcome = await this.#ask(member, 'apply', { text: next.text, generation: next.generation }, workerReloadTimeoutMs);
    if (outcome.ok) member.generation = next.generation;
    return outcome;
  }

  /** Lets every worker drain, then resolves once all have exited (killing what is left after the deadline and a grace). */
  async #drain(deadlineMs: number): Promise<void> {
    this.#stopping = true;
    this.#tickets.stop();
    const allExited = new Promise<void>((resolve) => {
      if (this.#members.size === 0) resolve();
      cluster.on('exit', () => this.#members.size === 0 && resolve());
    });
    for (const w of this.#members.keys()) this.#send(w, { type: 'drain' });
    const killer = setTimeout(() => {
      for (const w of this.#members.keys()) w.process.kill('SIGKILL');
    }, deadlineMs + exitGraceMs);
    await allExited;
    clearTimeout(killer);
  }

  #serving(): Member[] {
    return [...this.#members.values()].filter((m) => m.generation !== null);
  }

  #send(worker: Worker, message: ToWorker): void {
    if (worker.isConnected()) worker.send(message);
  }

  /** Sends one worker a request; resolves with its answer, or a failure when it does not answer in time or exits: never hangs. */
  #ask<K extends WorkerOp>(member: Member, op: K, arg: WorkerOps[K]['arg'], timeoutMs: number): Promise<Outcome<WorkerOps[K]['answer']>> {
    return new Promise((resolve) => {
      const id = this.#nextId++;
      const settle = (outcome: Outcome<WorkerOps[K]['answer']>) => {
        clearTimeout(timer);
        member.pending.delete(id);
        resolve(outcome);
      };
      const failed = (why: string) => settle({ ok: false, code: 'PCL_WORKER_FAILED', message: `worker ${member.worker.id} ${why}` });
      const timer = setTimeout(() => failed('did not answer in time'), timeoutMs);
      member.pending.set(id, {
        answer: (answer) => settle(answer.ok ? { ok: true, value: answer.value as WorkerOps[K]['answer'] } : { ok: false, code: answer.code, message: answer.message }),
        gone: failed,
      });
      this.#send(member.worker, { type: 'ask', id, op, arg } as Ask);
    });
  }

  /** Asks each of `to` and resolves with their answers once all confirmed; rejects with PCL_WORKER_FAILED naming those that did not. */
  async #askAll<K extends WorkerOp>(to: readonly Member[], op: K, arg: WorkerOps[K]['arg']): Promise<WorkerOps[K]['answer'][]> {
    const outcomes = await Promise.all(to.map((m) => this.#ask(m, op, arg, workerAnswerTimeoutMs)));
    const missing = outcomes.flatMap((o) => (o.ok ? [] : [o.message]));
    if (missing.length > 0) throw new PortcullisError('PCL_WORKER_FAILED', `not confirmed by ${missing.join(', ')}`);
    return outcomes.map((o) => (o as { value: WorkerOps[K]['answer'] }).value);
  }

  #valueOr<T>(outcome: Outcome<T>, fallback: T): T {
    return outcome.ok ? outcome.value : fallback;
  }
}
