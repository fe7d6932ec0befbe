import { formatHostPort, type Config } from '../config/index.js';
import { startPortcullis } from '../portcullis.js';
import type { Logger } from '../telemetry/index.js';
import { accessLogFor, reopenAccessLog } from './access-log-for.js';
import type { ConfigSource } from './config-source.js';
import { openControlSocket } from './control-socket.js';
import { Reloader } from './reloader.js';
import { onStopSignals } from './stop-signals.js';
import { applyDenyList } from './deny-list-sync.js';
import { FileWatcher, watchedFilesOf } from './file-watcher.js';
import { scheduleInternalRenewal } from './internal-certificates.js';
import { readDenyList } from '../state/index.js';

/**
 * One process serves (workers: 1): reload on SIGHUP and through the control
 * socket, drain on SIGTERM/SIGINT within timeouts.drain, then exit 0.
 * Resolves once serving; returns the address for the caller's banner.
 */
export async function runSingle(source: ConfigSource, config: Config, log: Logger): Promise<{ port: number }> {
  const access = accessLogFor(config, log);
  const proxy = await startPortcullis(config, log, { accessLog: access, denyList: readDenyList(config.dataDir) });
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
    },
    log,
  );
  await watcher.watch(watchedFilesOf(config));
  let control: { close(): Promise<void> };
  try {
    control = await openControlSocket(config.dataDir, {
      reload: () => reloader.reload('control socket'),
      denyList: async () => applyDenyList(proxy.config.dataDir, (entries) => `${proxy.setDenyList(entries)} open connection(s) closed`, log),
    });
  } catch (err) {
    watcher.close();
    await proxy.close();
    throw err;
  }
  const stopRenewal = source.renewInternal ? scheduleInternalRenewal(() => (source.renewInternal as () => Promise<string[]>)(), log) : () => {};
  // handlers first: whoever reads "listening" may signal at once
  process.on('SIGHUP', () => void reloader.reload('SIGHUP'));
  onStopSignals(log, async (signal) => {
    const drainMs = proxy.config.timeouts.drainMs;
    log.info({ event: 'stopping', signal, drainMs }, `received ${signal}: finishing in-flight requests (at most ${drainMs} ms)`);
    watcher.close();
    stopRenewal();
    await reloader.stop();
    await Promise.all([proxy.drain(drainMs), control.close()]);
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
