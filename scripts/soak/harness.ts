/**
 * The proxy side of scripts/soak.ts, run as a child process so that its
 * memory, descriptors and handles are measured apart from the load
 * generator: `node --import tsx scripts/soak/harness.ts CONFIG LOGFILE`.
 *
 * It starts Portcullis in-process the way the CLI's single-process mode does
 * (loadConfigFile → startPortcullis, a JSON diagnostic log written
 * synchronously, the access log file the config names) and answers the
 * parent over IPC:
 *   {id, type: 'reload'}  re-reads CONFIG and applies it (proxy.reload, then
 *                         the access log reopened, as the supervisor does)
 *   {id, type: 'stats', gc?}  memory, active resources by type, open fds and
 *                         the proxy's open connections
 *   {id, type: 'stop'}    closes the proxy, flushes the access log, exits 0
 * It exits as soon as the IPC channel closes (the parent went away), so an
 * interrupted soak never leaves a proxy behind.
 */
import { readdirSync } from 'node:fs';
import { pino } from 'pino';
import { loadConfigFile } from '../../src/config/index.js';
import { startPortcullis } from '../../src/instance/index.js';
import { createAccessLog } from '../../src/telemetry/index.js';
import type { HarnessReply, HarnessRequest, HarnessStats } from './protocol.js';

const [configFile, logFile] = process.argv.slice(2);
if (!configFile || !logFile || !process.send) {
  console.error('usage: fork scripts/soak/harness.ts CONFIG LOGFILE (with an IPC channel)');
  process.exit(2);
}
const send = (message: HarnessReply): void => {
  if (process.connected) process.send?.(message);
};

// the parent is gone: nobody can stop us any more, so stop now
process.on('disconnect', () => process.exit(0));

const config = loadConfigFile(configFile);
const log = pino(
  { level: config.log.level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime, formatters: { level: (label) => ({ level: label }) } },
  pino.destination({ dest: logFile, sync: true }),
);
const access = config.log.access.startsWith('/') ? createAccessLog(config.log.access, (message) => log.error({ event: 'access_log_trouble' }, message)) : null;
const proxy = await startPortcullis(config, log, { accessLog: access });

const gc = (globalThis as { gc?: () => void }).gc;

async function stats(collect: boolean): Promise<HarnessStats> {
  if (collect && gc) {
    // twice: the first pass runs finalizers that free more on the second
    gc();
    gc();
  }
  const memory = process.memoryUsage();
  const activeResources: Record<string, number> = {};
  for (const type of process.getActiveResourcesInfo()) activeResources[type] = (activeResources[type] ?? 0) + 1;
  const open = (await proxy.metrics.activeConnections.get()).values[0]?.value ?? 0;
  const cpu = process.cpuUsage();
  return {
    rss: memory.rss,
    heapUsed: memory.heapUsed,
    external: memory.external,
    arrayBuffers: memory.arrayBuffers,
    activeResources,
    openFds: readdirSync('/proc/self/fd').length,
    openConnections: open,
    cpuMicros: cpu.user + cpu.system,
  };
}

process.on('message', (message: HarnessRequest) => {
  void (async () => {
    switch (message.type) {
      case 'reload':
        try {
          // as the supervisor's reloader: a fresh frozen config from the file, swapped in, then the access log reopened
          await proxy.reload(loadConfigFile(configFile));
          access?.reopen();
          send({ id: message.id, type: 'reloaded', ok: true });
        } catch (err) {
          send({ id: message.id, type: 'reloaded', ok: false, error: err instanceof Error ? `${(err as { code?: string }).code ?? err.name}: ${err.message}` : String(err) });
        }
        return;
      case 'stats':
        send({ id: message.id, type: 'stats', stats: await stats(message.gc === true) });
        return;
      case 'stop':
        await proxy.close();
        await access?.flush(5000);
        log.flush();
        send({ id: message.id, type: 'stopped' });
        process.disconnect();
        return;
    }
  })();
});

send({ id: 0, type: 'ready', port: proxy.address.port });
