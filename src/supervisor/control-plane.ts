import { AggregatorRegistry } from 'prom-client';
import { readApiKeys, type ApiKeyRecord } from '../access/index.js';
import { AcmeManager, ChallengeBoard, noChallenges } from '../acme/index.js';
import { AdminListener } from '../admin/index.js';
import { formatHostPort, runtimeAdvice, runtimeGroups, type Config } from '../config/index.js';
import { PortcullisError } from '../errors.js';
import { SupervisorMetrics, type Logger } from '../observe/index.js';
import { memoryState, redisState, type RedisLink, type StateBackend } from '../state/index.js';
import { openCluster } from './cluster-link.js';
import { ClusterTicketKeys, type TicketKeyRing } from '../tls/index.js';
import { ClusterCertificates } from './cluster-certificates.js';
import { readDenyList, type DenyEntry } from '../trust/index.js';
import type { ConfigSource } from './config-source.js';
import { openControlSocket } from './control-socket.js';
import type { Applied, ConfigGeneration, DataPlane, Listening, PlaneState } from './data-plane.js';
import { FileWatcher, watchedFilesOf } from './file-watcher.js';
import { startInProcessPlane } from './in-process-plane.js';
import { renewalOf, scheduleInternalRenewal } from './internal-certificates.js';
import { Reloader, type ReloadOutcome, type ReloadResult } from './reloader.js';
import { FleetRegistry } from './fleet-registry.js';
import { describeInstance, InstanceIdentity } from './instance-status.js';
import type { InstanceRecord } from '../state/index.js';
import { onStopSignals } from './stop-signals.js';
import { apiKeyStore, denyListStore, StoreSync } from './store-sync.js';
import type { DenyChange, KeyRevocation } from './store-changes.js';
import type { DenyEdit, KeyEdit } from './store-edits.js';
import { SharedStores, type StoreKeeper } from './shared-stores.js';
import { startWorkerFleet } from './worker-fleet.js';

/**
 * The data plane a config asks for: this process (workers: 1, sharing the control plane's Redis connection) or a fleet of workers (each with its own).
 * `tickets`: the cluster's session-ticket keys (state.backend: redis), kept by the control plane for either kind; null: the plane rotates its own.
 */
function startDataPlane(initial: ConfigGeneration, state: PlaneState, cluster: RedisLink | null, tickets: TicketKeyRing | null, log: Logger): Promise<DataPlane> {
  return initial.config.workers > 1 ? startWorkerFleet(initial, state, log, tickets) : startInProcessPlane(initial, state, log, { cluster, ...(tickets ? { tickets } : {}) });
}

/**
 * Runs an instance: starts its data plane, then everything that steers it,
 * once, whatever the data plane is — reloads (SIGHUP, the control socket,
 * certificate files changed on disk, an ACME certificate issued) one at a
 * time through the pre-swap checks, the deny list and API keys kept in step
 * with their files under dataDir, the admin listener, internal certificate
 * renewal, ACME, and on SIGTERM/SIGINT a drain within timeouts.drain, then
 * exit 0. Resolves once serving, with where it serves.
 */
export async function runControlPlane(source: ConfigSource, initial: { config: Config; text: string | null }, log: Logger): Promise<Listening> {
  const { dataDir } = initial.config;
  const state: PlaneState = { denyList: readDenyList(dataDir), apiKeys: readApiKeys(dataDir), challenges: noChallenges };
  const cluster = await openCluster(initial.config, log);
  let tickets: ClusterTicketKeys | null = null;
  let plane: DataPlane;
  try {
    // the cluster's keys before the first handshake
    tickets = cluster && (await ClusterTicketKeys.open(cluster, initial.config.tls.ticketKeyRotationMs, log));
    plane = await startDataPlane({ ...initial, generation: 1 }, state, cluster, tickets?.ring ?? null, log);
  } catch (err) {
    tickets?.stop();
    await cluster?.close();
    throw err;
  }
  const certificates = cluster ? new ClusterCertificates(cluster, dataDir, log) : null;
  const control = new ControlPlane(source, { ...initial, generation: 1 }, plane, state, cluster, tickets, certificates, log);
  try {
    await control.open();
  } catch (err) {
    await control.close();
    throw err;
  }
  control.listen();
  return plane.listening;
}

class ControlPlane {
  readonly #metrics = new SupervisorMetrics();
  readonly #denyList: StoreKeeper<DenyChange, DenyEdit>;
  readonly #apiKeys: StoreKeeper<KeyRevocation, KeyEdit>;
  /** With state.backend: redis, the deny list and API keys the cluster shares. */
  readonly #stores: SharedStores | null;
  readonly #watcher: FileWatcher;
  readonly #reloader: Reloader;
  #accepted: ConfigGeneration;
  #control: { close(): Promise<void> } | null = null;
  #admin: AdminListener | null = null;
  #acme: AcmeManager | null = null;
  #stopRenewal: () => void = () => {};
  readonly #identity = new InstanceIdentity();
  #acceptedAt = new Date();
  #lastReload: ReloadOutcome | null = null;
  #fleet: FleetRegistry | null = null;

  constructor(
    private readonly source: ConfigSource,
    accepted: ConfigGeneration,
    private readonly plane: DataPlane,
    state: PlaneState,
    private readonly cluster: RedisLink | null,
    private readonly tickets: ClusterTicketKeys | null,
    /** The ACME certificates, challenges and CA the cluster shares (null with state.backend: memory). */
    private readonly certificates: ClusterCertificates | null,
    private readonly log: Logger,
  ) {
    this.#accepted = accepted;
    const applyDenyList = async (entries: readonly DenyEntry[]) => {
      const applied = await plane.setDenyList(entries);
      return `${this.#by(applied)}${applied.closed} open connection(s) closed`;
    };
    const applyApiKeys = async (records: readonly ApiKeyRecord[]) => `${this.#by(await plane.setApiKeys(records))}in force for every request from now on`;
    const dataDir = () => this.#accepted.config.dataDir;
    this.#stores = cluster ? new SharedStores(cluster, dataDir, state, { denyList: applyDenyList, apiKeys: applyApiKeys }, this.#metrics.registry, log) : null;
    // the stores under dataDir as the data plane keeps them in force, with the changes a command could not save on top
    this.#denyList = this.#stores?.denyList ?? new StoreSync(() => denyListStore(dataDir()), state.denyList, applyDenyList, log);
    this.#apiKeys = this.#stores?.apiKeys ?? new StoreSync(() => apiKeyStore(dataDir()), state.apiKeys, applyApiKeys, log);
    // certificate files replaced on disk (renewal tooling, cert-manager) are picked up by a reload
    this.#watcher = new FileWatcher((files) => {
      log.info({ event: 'certificate_files_changed', files }, 'certificate files changed on disk; reloading');
      void this.#reloader.reload('certificate files changed');
    });
    let candidate: { config: Config; text: string | null } | null = null;
    const load = async () => {
      candidate = await source.load();
      return candidate.config;
    };
    const apply = async (config: Config) => {
      if (!sameState(config, this.#accepted.config)) throw new PortcullisError('PCL_RELOAD_FAILED', 'state: changed; where the state lives is chosen at start: restart the instance to move it');
      const next = { config, text: (candidate as { text: string | null }).text, generation: this.#accepted.generation + 1 };
      await plane.apply(next);
      this.#accepted = next;
      this.#acceptedAt = new Date();
      await this.#watcher.watch(watchedFilesOf(config));
      this.#acme?.apply(config);
      this.tickets?.apply(config);
    };
    this.#reloader = new Reloader(source.description, load, apply, log, this.#metrics, () => this.#accepted.config, (outcome) => {
      this.#lastReload = outcome;
      void this.#fleet?.beat();
    });
  }

  /** "applied by 3 workers, " for a fleet; nothing when this process serves. */
  #by(applied: Applied): string {
    return this.plane.listening.workers === null ? '' : `applied by ${applied.processes} workers, `;
  }

  async open(): Promise<void> {
    const { config } = this.#accepted;
    await this.#watcher.watch(watchedFilesOf(config));
    // the cluster's deny list and keys in force before the first control request
    await this.#stores?.start();
    this.#control = await openControlSocket(
      config.dataDir,
      {
        reload: () => this.#reloader.reload('control socket'),
        denyList: (change, edit) => this.#denyList.sync(change, edit),
        apiKeys: (change, edit) => this.#apiKeys.sync(change, edit),
        flush: () => this.#flush(),
        status: async () => ({ ok: true, message: `${this.#identity.id}: config generation ${this.#accepted.generation}`, status: this.#describe() }),
      },
      // before every control request: another attempt to save what commands could not
      async () => {
        await Promise.all([this.#denyList.retry(), this.#apiKeys.retry()]);
      },
    );
    if (config.listen.admin) {
      this.#admin = await AdminListener.open({ address: config.listen.admin, dataDir: config.dataDir, profile: config.tls.profile, log: this.log, metrics: this.#metrics, scrape: () => this.#scrape(), caReplica: this.certificates?.caReplica });
    }
    this.#stopRenewal = scheduleInternalRenewal(renewalOf(this.source, this.#admin), this.log);
    // once this instance owns the dataDir (the control socket): only then may it order certificates into it
    const inCluster = await this.certificates?.follow({ reload: (trigger) => this.#reloader.reload(trigger), setAcmeChallenges: (set) => this.plane.setAcmeChallenges(set) });
    this.#acme = new AcmeManager({ state: this.#stateBackend(), board: new ChallengeBoard((set) => this.plane.setAcmeChallenges(set)), log: this.log, metrics: this.#metrics, issued: () => this.#reloader.reload('acme certificate issued'), ...inCluster });
    this.#acme.apply(this.#accepted.config);
    if (this.cluster) {
      this.#fleet = new FleetRegistry(this.cluster, () => this.#describe(), this.log);
      await this.#fleet.start();
    }
  }

  /** This instance as the fleet registry and `portcullis status` show it. */
  #describe(): InstanceRecord {
    const admin = this.#admin?.address;
    const facts = { accepted: this.#accepted, acceptedAt: this.#acceptedAt, lastReload: this.#lastReload, listening: this.plane.listening, admin: admin ? formatHostPort(admin.address, admin.port) : null };
    return describeInstance(this.#identity, facts);
  }

  /** Where values and locks are shared: the cluster's Redis, or this instance's dataDir. */
  #stateBackend(): StateBackend {
    return this.cluster ? redisState(this.cluster) : memoryState(this.#accepted.config.dataDir);
  }

  /** Signal handlers, then the "listening" line: whoever reads it may signal at once. */
  listen(): void {
    process.on('SIGHUP', () => void this.#reloader.reload('SIGHUP'));
    onStopSignals(this.log, (signal) => this.#stop(signal));
    const { https, http, workers } = this.plane.listening;
    const { config } = this.#accepted;
    const advice = runtimeAdvice();
    if (advice) this.log.warn({ event: 'runtime_without_post_quantum', node: process.version, openssl: runtimeGroups.openssl }, advice);
    this.log.info(
      { event: 'listening', https, http, config: this.source.description, ...(workers === null ? { sites: config.sites.length, profile: config.tls.profile.name } : { workers }) },
      `serving HTTPS on ${https}${http ? `, redirecting HTTP on ${http}` : ''}${workers === null ? '' : `, with ${workers} workers`}`,
    );
  }

  /** A start that failed half way: everything opened so far, and the data plane, stop at once. */
  async close(): Promise<void> {
    this.#watcher.close();
    this.#stopRenewal();
    this.#acme?.stop();
    this.certificates?.stop();
    await this.#fleet?.stop();
    await Promise.all([this.plane.close(), this.#control?.close(), this.#admin?.close(), this.#stores?.stop()]);
    this.tickets?.stop();
    await this.cluster?.close();
  }

  async #stop(signal: NodeJS.Signals): Promise<void> {
    const drainMs = this.#accepted.config.timeouts.drainMs;
    const { workers } = this.plane.listening;
    this.#watcher.close();
    this.#stopRenewal();
    this.#acme?.stop();
    this.certificates?.stop();
    await this.#reloader.stop();
    // out of the fleet as soon as it stops taking connections
    await this.#fleet?.stop();
    this.log.info(
      { event: 'stopping', signal, drainMs, ...(workers === null ? {} : { workers }) },
      `received ${signal}: ${workers === null ? 'finishing' : 'workers finish'} in-flight requests (at most ${drainMs} ms)`,
    );
    await Promise.all([this.plane.drain(drainMs), this.#control?.close(), this.#admin?.close(), this.#denyList.stop(), this.#apiKeys.stop()]);
    this.tickets?.stop();
    await this.cluster?.close();
    this.log.info({ event: 'stopped' }, 'stopped');
  }

  async #flush(): Promise<ReloadResult> {
    try {
      const applied = await this.plane.flush();
      return { ok: true, message: this.plane.listening.workers === null ? 'summaries written' : `summaries written by ${applied.processes} workers` };
    } catch (err) {
      return { ok: false, code: err instanceof PortcullisError ? err.code : 'PCL_WORKER_FAILED', message: `summaries ${(err as Error).message}` };
    }
  }

  /** The instance's metrics: the control plane's own plus every serving process's, counters summed. */
  async #scrape(): Promise<string> {
    const tickets = this.tickets ? [await this.tickets.registry.getMetricsAsJSON()] : [];
    return AggregatorRegistry.aggregate([await this.#metrics.registry.getMetricsAsJSON(), ...tickets, ...(await this.plane.metrics())]).metrics();
  }
}

/** Whether two configs keep the state in the same place (the settings are plain data, provisioned from the same keys). */
function sameState(a: Config, b: Config): boolean {
  return JSON.stringify(a.state) === JSON.stringify(b.state);
}
