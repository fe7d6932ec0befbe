import { formatHostPort, type Config } from '../config/index.js';
import { startPortcullis } from '../instance/index.js';
import { Registry } from 'prom-client';
import type { AdminListener } from '../admin/index.js';
import type { AcmeManager } from '../acme/index.js';
import { SupervisorMetrics, type Logger } from '../observe/index.js';
import { accessLogFor, reopenAccessLog } from './access-log-for.js';
import type { ConfigSource } from './config-source.js';
import { openControlSocket } from './control-socket.js';
import { Reloader } from './reloader.js';
import { onStopSignals } from './stop-signals.js';
import { apiKeyStore, denyListStore, StoreSync } from './store-sync.js';
import { FileWatcher, watchedFilesOf } from './file-watcher.js';
import { renewalOf, scheduleInternalRenewal } from './internal-certificates.js';
import { openAdmin } from './admin-for.js';
import { startAcme } from './acme-for.js';
import { readDenyList } from '../trust/index.js';
import { readApiKeys } from '../access/index.js';

/**
 * One process serves (workers: 1): reload on SIGHUP and through the control
 * socket, drain on SIGTERM/SIGINT within timeouts.drain, then exit 0.
 * Resolves once serving; returns the address for the caller's banner.
 */
export async function runSingle(source: ConfigSource, config: Config, log: Logger): Promise<{ port: number }> {
  const access = accessLogFor(config, log);
  const initialDenyList = readDenyList(config.dataDir);
  const initialApiKeys = readApiKeys(config.dataDir);
  const proxy = await startPortcullis(config, log, { accessLog: access, denyList: initialDenyList, apiKeys: initialApiKeys });
  // the stores under dataDir as the instance keeps them in force, with the changes a command could not save on top
  const denyList = new StoreSync(() => denyListStore(proxy.config.dataDir), initialDenyList, async (entries) => `${proxy.setDenyList(entries)} open connection(s) closed`, log);
  const apiKeys = new StoreSync(
    () => apiKeyStore(proxy.config.dataDir),
    initialApiKeys,
    async (records) => {
      proxy.setApiKeys(records);
      return 'in force for every request from now on';
    },
    log,
  );
  const metrics = new SupervisorMetrics();
  let acme: AcmeManager | null = null;
  // certificate files replaced on disk (renewal tooling, cert-manager) are picked up by a reload
  const watcher = new FileWatcher((files) => {
    log.info({ event: 'certificate_files_changed', files }, 'certificate files changed on disk; reloading');
    void reloader.reload('certificate files changed');
  });
  const reloader = new Reloader(
    source.description,
    () => source.load(),
    async (next) => {
      await proxy.reload(next);
      reopenAccessLog(access, log);
      await watcher.watch(watchedFilesOf(next));
      acme?.apply(next);
    },
    log,
    metrics,
    () => proxy.config,
  );
  await watcher.watch(watchedFilesOf(config));
  /** Before every control request: another attempt to save what commands could not. */
  const retryUnsaved = async () => {
    await Promise.all([denyList.retry(), apiKeys.retry()]);
  };
  let control: { close(): Promise<void> } | null = null;
  let admin: AdminListener | null = null;
  try {
    control = await openControlSocket(config.dataDir, {
      reload: () => reloader.reload('control socket'),
      denyList: (change) => denyList.sync(change),
      apiKeys: (change) => apiKeys.sync(change),
      flush: async () => {
        await proxy.flushSummaries();
        return { ok: true, message: 'summaries written' };
      },
    }, retryUnsaved);
    admin = await openAdmin(config, log, metrics, () => Registry.merge([metrics.registry, proxy.metrics.registry]).metrics());
  } catch (err) {
    watcher.close();
    await Promise.all([proxy.close(), control?.close()]);
    throw err;
  }
  const stopRenewal = scheduleInternalRenewal(renewalOf(source, admin), log);
  // once this instance owns the dataDir (the control socket): only then may it order certificates into it
  acme = startAcme(config, log, metrics, async (set) => proxy.setAcmeChallenges(set), () => reloader.reload('acme certificate issued'));
  // handlers first: whoever reads "listening" may signal at once
  process.on('SIGHUP', () => void reloader.reload('SIGHUP'));
  onStopSignals(log, async (signal) => {
    const drainMs = proxy.config.timeouts.drainMs;
    log.info({ event: 'stopping', signal, drainMs }, `received ${signal}: finishing in-flight requests (at most ${drainMs} ms)`);
    watcher.close();
    stopRenewal();
    acme?.stop();
    await reloader.stop();
    await Promise.all([proxy.drain(drainMs), control?.close(), admin?.close(), denyList.stop(), apiKeys.stop()]);
    await access?.flush();
    log.info({ event: 'stopped' }, 'stopped');
  });
  const where = formatHostPort(proxy.address.address, proxy.address.port);
  const http = proxy.httpAddress ? formatHostPort(proxy.httpAddress.address, proxy.httpAddress.port) : null;
  log.info(
    { event: 'listening', https: where, http, config: source.description, sites: config.sites.length, profile: config.tls.profile.name },
    `serving HTTPS on ${where}${http ? `, redirecting HTTP on ${http}` : ''}`,
  );
  return { port: proxy.address.port };
}
