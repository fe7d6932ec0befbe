import type { Config } from '../config/index.js';
import { startPortcullis, type Portcullis } from '../portcullis.js';
import { PortcullisError } from '../errors.js';
import type { Logger } from '../telemetry/index.js';
import { TicketKeyRing } from '../tls/index.js';
import type { ConfigSource } from './config-source.js';
import type { ToPrimary, ToWorker } from './messages.js';
import { Reloader } from './reloader.js';
import { accessLogFor } from './single.js';

function send(message: ToPrimary): void {
  process.send?.(message);
}

/**
 * A cluster worker: serves with the primary's session-ticket keys (so a
 * session resumes on any worker), reloads and drains when the primary says
 * so, and drains on its own when the primary disappears. Signals from a
 * terminal reach the whole process group; the primary coordinates, so a
 * worker ignores SIGINT and SIGHUP.
 */
export async function runWorker(source: ConfigSource, config: Config, log: Logger): Promise<void> {
  process.on('SIGINT', () => {});
  process.on('SIGHUP', () => {});
  const tickets = new TicketKeyRing();
  let proxy: Portcullis | null = null;
  let reloader: Reloader | null = null;
  let access: ReturnType<typeof accessLogFor> = null;
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

  let gotKeys!: () => void;
  const keysArrived = new Promise<void>((resolve) => (gotKeys = resolve));
  process.on('message', (message: ToWorker) => {
    switch (message.type) {
      case 'tickets':
        tickets.import(Buffer.from(message.keys, 'base64'));
        gotKeys();
        return;
      case 'reload':
        void (reloader?.reload('primary') ?? Promise.resolve({ ok: false as const, code: 'PCL_RELOAD_FAILED', message: 'worker not started yet' })).then((result) =>
          send({ type: 'reloaded', id: message.id, result }),
        );
        return;
      case 'drain':
        stop();
        return;
    }
  });
  process.on('disconnect', stop);
  process.on('SIGTERM', stop);
  send({ type: 'hello' });
  await keysArrived;

  try {
    access = accessLogFor(config, log);
    proxy = await startPortcullis(config, log, { tickets, accessLog: access });
  } catch (err) {
    send({ type: 'failed', code: err instanceof PortcullisError ? err.code : 'PCL_WORKER_FAILED', message: (err as Error).message });
    process.exit(3);
  }
  const running = proxy;
  reloader = new Reloader(
    source,
    async (next) => {
      await running.reload(next);
      access?.reopen();
    },
    log,
  );
  send({ type: 'ready', port: running.address.port, httpPort: running.httpAddress?.port ?? null });
}
