import { formatHostPort, type Config } from '../config/index.js';
import { startPortcullis } from '../portcullis.js';
import { createAccessLog, type AccessLog, type Logger } from '../telemetry/index.js';
import type { ConfigSource } from './config-source.js';
import { openControlSocket } from './control-socket.js';
import { Reloader } from './reloader.js';

/** The access log a config asks for, or null when it is off. */
export function accessLogFor(config: Config, log: Logger): AccessLog | null {
  return config.log.access === 'off' ? null : createAccessLog(config.log.access, (message) => log.error({ event: 'access_log_trouble' }, message));
}

/**
 * One process serves (workers: 1): reload on SIGHUP and through the control
 * socket, drain on SIGTERM/SIGINT within timeouts.drain, then exit 0.
 * Resolves once serving; returns the address for the caller's banner.
 */
export async function runSingle(source: ConfigSource, config: Config, log: Logger): Promise<{ port: number }> {
  const access = accessLogFor(config, log);
  const proxy = await startPortcullis(config, log, { accessLog: access });
  const reloader = new Reloader(
    source,
    async (next) => {
      await proxy.reload(next);
      access?.reopen();
    },
    log,
  );
  let control: { close(): Promise<void> };
  try {
    control = await openControlSocket(config.dataDir, { reload: () => reloader.reload('control socket') });
  } catch (err) {
    await proxy.close();
    throw err;
  }
  const where = formatHostPort(proxy.address.address, proxy.address.port);
  const http = proxy.httpAddress ? formatHostPort(proxy.httpAddress.address, proxy.httpAddress.port) : null;
  log.info(
    { event: 'listening', https: where, http, config: source.description, sites: config.sites.length, profile: config.tls.profile.name },
    `serving HTTPS on ${where}${http ? `, redirecting HTTP on ${http}` : ''}`,
  );

  process.on('SIGHUP', () => void reloader.reload('SIGHUP'));
  const stop = (signal: NodeJS.Signals): void => {
    const drainMs = proxy.config.timeouts.drainMs;
    log.info({ event: 'stopping', signal, drainMs }, `received ${signal}: finishing in-flight requests (at most ${drainMs} ms)`);
    void (async () => {
      await proxy.drain(drainMs);
      await control.close();
      await access?.flush();
      log.info({ event: 'stopped' }, 'stopped');
      process.exit(0);
    })();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  return { port: proxy.address.port };
}
