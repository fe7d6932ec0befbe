import { AggregatorRegistry } from 'prom-client';
import { readApiKeys, type ApiKeyRecord } from '../access/index.js';
import { AcmeManager, ChallengeBoard, noChallenges } from '../acme/index.js';
import { AdminListener } from '../admin/index.js';
import { runtimeAdvice, runtimeGroups, type Config } from '../config/index.js';
import { PortcullisError } from '../errors.js';
import { SupervisorMetrics, type Logger } from '../observe/index.js';
import { memoryState, redisState, type RedisLink, type StateBackend } from '../state/index.js';
import { openCluster } from './cluster-link.js';
import { ClusterCertificates } from './cluster-certificates.js';
import { readDenyList, type DenyEntry } from '../trust/index.js';
import type { ConfigSource } from './config-source.js';
import { openControlSocket } from './control-socket.js';
import type { Applied, ConfigGeneration, DataPlane, Listening, PlaneState } from './data-plane.js';
import { FileWatcher, watchedFilesOf } from './file-watcher.js';
import { startInProcessPlane } from './in-process-plane.js';
import { renewalOf, scheduleInternalRenewal } from './internal-certificates.js';
import { Reloader, type ReloadResult } from './reloader.js';
import { onStopSignals } from './stop-signals.js';
import { apiKeyStore, denyListStore, StoreSync } from './store-sync.js';
import type { DenyChange, KeyRevocation } from './store-changes.js';
import { startWorkerFleet } from './worker-fleet.js';

/** The data plane a config asks for: this process (workers: 1, sharing the control plane's Redis connection) or a fleet of workers (each with its own). */
function startDataPlane(initial: ConfigGeneration, state: PlaneState, cluster: RedisLink | null, log: Logger): Promise<DataPlane> {
  return initial.config.workers > 1 ? startWorkerFleet(initial, state, log) : startInProcessPlane(initial, state, log, { cluster });
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
  let plane: DataPlane;
  try {
    plane = await startDataPlane({ ...initial, generation: 1 }, state, cluster, log);
  } catch (err) {
    await cluster?.close();
    throw err;
  }
  const shared = cluster ? new ClusterCertificates(cluster, dataDir, log) : null;
  const control = new ControlPlane(source, { ...initial, generation: 1 }, plane, state, cluster, log, shared);
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
  readonly #denyList: StoreSync<DenyEntry, DenyChange>;
  readonly #apiKeys: StoreSync<ApiKeyRecord, KeyRevocation>;
  readonly #watcher: FileWatcher;
  readonly #reloader: Reloader;
  #accepted: ConfigGeneration;
  #control: { close(): Promise<void> } | null = null;
  #admin: AdminListener | null = null;
  #acme: AcmeManager | null = null;
  #stopRenewal: () => void = () => {};

  constructor(
    private readonly source: ConfigSource,
    accepted: ConfigGeneration,
    private readonly plane: DataPlane,
    state: PlaneState,
    private readonly cluster: RedisLink | null,
    private readonly log: Logger,
    /** The ACME certificates, challenges and CA the cluster shares (null with state.backend: memory). */
    private readonly shared: ClusterCertificates | null = null,
  ) {
    this.#accepted = accepted;
    // the stores under dataDir as the data plane keeps them in force, with the changes a command could not save on top
    this.#denyList = new StoreSync(() => denyListStore(this.#accepted.config.dataDir), state.denyList, async (entries) => {
      const applied = await plane.setDenyList(entries);
      return `${this.#by(applied)}${applied.closed} open connection(s) closed`;
    }, log);
    this.#apiKeys = new StoreSync(() => apiKeyStore(this.#accepted.config.dataDir), state.apiKeys, async (records) => `${this.#by(await plane.setApiKeys(records))}in force for every request from now on`, log);
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
      await this.#watcher.watch(watchedFilesOf(config));
      this.#acme?.apply(config);
    };
    this.#reloader = new Reloader(source.description, load, apply, log, this.#metrics, () => this.#accepted.config);
  }

  /** "applied by 3 workers, " for a fleet; nothing when this process serves. */
  #by(applied: Applied): string {
    return this.plane.listening.workers === null ? '' : `applied by ${applied.processes} workers, `;
  }

  async open(): Promise<void> {
    const { config } = this.#accepted;
    await this.#watcher.watch(watchedFilesOf(config));
    this.#control = await openControlSocket(
      config.dataDir,
      {
        reload: () => this.#reloader.reload('control socket'),
        denyList: (change) => this.#denyList.sync(change),
        apiKeys: (change) => this.#apiKeys.sync(change),
        flush: () => this.#flush(),
      },
      // before every control request: another attempt to save what commands could not
      async () => {
        await Promise.all([this.#denyList.retry(), this.#apiKeys.retry()]);
      },
    );
    if (config.listen.admin) {
      this.#admin = await AdminListener.open({ address: config.listen.admin, dataDir: config.dataDir, profile: config.tls.profile, log: this.log, metrics: this.#metrics, scrape: () => this.#scrape(), caReplica: this.shared?.caReplica });
    }
    this.#stopRenewal = scheduleInternalRenewal(renewalOf(this.source, this.#admin), this.log);
    // once this instance owns the dataDir (the control socket): only then may it order certificates into it
    const inCluster = await this.shared?.follow({ reload: (trigger) => this.#reloader.reload(trigger), setAcmeChallenges: (set) => this.plane.setAcmeChallenges(set) });
    this.#acme = new AcmeManager({ state: this.#stateBackend(), board: new ChallengeBoard((set) => this.plane.setAcmeChallenges(set)), log: this.log, metrics: this.#metrics, issued: () => this.#reloader.reload('acme certificate issued'), ...inCluster });
    this.#acme.apply(this.#accepted.config);
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
    this.shared?.stop();
    await Promise.all([this.plane.close(), this.#control?.close(), this.#admin?.close()]);
    await this.cluster?.close();
  }

  async #stop(signal: NodeJS.Signals): Promise<void> {
    const drainMs = this.#accepted.config.timeouts.drainMs;
    const { workers } = this.plane.listening;
    this.#watcher.close();
    this.#stopRenewal();
    this.#acme?.stop();
    this.shared?.stop();
    await this.#reloader.stop();
    this.log.info(
      { event: 'stopping', signal, drainMs, ...(workers === null ? {} : { workers }) },
      `received ${signal}: ${workers === null ? 'finishing' : 'workers finish'} in-flight requests (at most ${drainMs} ms)`,
    );
    await Promise.all([this.plane.drain(drainMs), this.#control?.close(), this.#admin?.close(), this.#denyList.stop(), this.#apiKeys.stop()]);
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
    return AggregatorRegistry.aggregate([await this.#metrics.registry.getMetricsAsJSON(), ...(await this.plane.metrics())]).metrics();
  }
}

/** Whether two configs keep the state in the same place (the settings are plain data, provisioned from the same keys). */
function sameState(a: Config, b: Config): boolean {
  return JSON.stringify(a.state) === JSON.stringify(b.state);
}
