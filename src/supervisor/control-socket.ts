import { connect, createServer, type Server, type Socket } from 'node:net';
import { chmodSync, mkdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { PortcullisError } from '../errors.js';
import type { ReloadResult } from './reloader.js';

/**
 * The local control channel of a running instance: a Unix socket at
 * `dataDir/control.sock`, mode 0600, so only the user running Portcullis can
 * use it. One JSON request per connection, one JSON answer. It also marks the
 * dataDir as taken: a second instance on the same dataDir is refused.
 */

export const controlSocketPath = (dataDir: string) => join(dataDir, 'control.sock');

export interface ControlHandlers {
  reload(): Promise<ReloadResult>;
  /** Re-reads the deny list under dataDir and applies it. */
  denyList(): Promise<ReloadResult>;
  /** Re-reads the API keys under dataDir and applies them. */
  apiKeys(): Promise<ReloadResult>;
  /** Writes every process's summaries under dataDir (client inventory, weak clients), for a report to read. */
  flush(): Promise<ReloadResult>;
}

type Command = 'reload' | 'deny-list' | 'api-keys' | 'flush';

interface Request {
  readonly command: Command;
}

const handlerNames: Readonly<Record<Command, keyof ControlHandlers>> = { reload: 'reload', 'deny-list': 'denyList', 'api-keys': 'apiKeys', flush: 'flush' };

/** Asks the instance behind `path` something; rejects with PCL_CONTROL_UNREACHABLE when nobody answers. */
export function sendControl(path: string, request: Request, timeoutMs = 60_000): Promise<ReloadResult> {
  return new Promise((resolve, reject) => {
    const socket = connect(path);
    let text = '';
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error('no answer in time')));
    socket.on('connect', () => socket.write(`${JSON.stringify(request)}\n`));
    socket.on('data', (d: Buffer) => (text += d.toString()));
    socket.on('end', () => {
      try {
        resolve(JSON.parse(text) as ReloadResult);
      } catch {
        reject(new PortcullisError('PCL_CONTROL_UNREACHABLE', `${path} answered something that is not a Portcullis control answer`));
      }
    });
    socket.on('error', (err: NodeJS.ErrnoException) =>
      reject(
        new PortcullisError('PCL_CONTROL_UNREACHABLE', `no running Portcullis answers on ${path} (${err.code ?? err.message}); is it running with this dataDir?`, {
          cause: err,
        }),
      ),
    );
  });
}

/** Serves the control socket; rejects with PCL_CONTROL_IN_USE when a live instance already holds it. */
export async function openControlSocket(dataDir: string, handlers: ControlHandlers): Promise<{ close(): Promise<void> }> {
  const path = controlSocketPath(dataDir);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const alive = await new Promise<boolean>((resolve) => {
    const probe = connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (alive) throw new PortcullisError('PCL_CONTROL_IN_USE', `another Portcullis instance runs with dataDir ${dataDir} (its control socket ${path} answers); stop it or use another dataDir`);
  try {
    unlinkSync(path); // left over by an instance that did not stop cleanly
  } catch {
    // nothing to remove
  }
  const open = new Set<Socket>();
  const server: Server = createServer((socket) => {
    open.add(socket);
    socket.once('close', () => open.delete(socket));
    let text = '';
    socket.setTimeout(10_000, () => socket.destroy());
    socket.on('error', () => {});
    const answer = (result: ReloadResult) => socket.end(`${JSON.stringify(result)}\n`);
    const onData = (d: Buffer) => {
      text += d.toString();
      if (text.length > 4096) return socket.destroy();
      const end = text.indexOf('\n');
      if (end < 0) return;
      // one request per connection: whatever follows the first line is ignored
      socket.off('data', onData);
      let request: unknown;
      try {
        request = JSON.parse(text.slice(0, end));
      } catch {
        return answer({ ok: false, code: 'PCL_CLI_USAGE', message: 'not a JSON request' });
      }
      const command = typeof request === 'object' && request !== null ? (request as Partial<Request>).command : undefined;
      const name = typeof command === 'string' && Object.hasOwn(handlerNames, command) ? handlerNames[command] : null;
      if (!name) return answer({ ok: false, code: 'PCL_CLI_USAGE', message: `unknown command; send {"command": one of ${Object.keys(handlerNames).join(', ')}}` });
      socket.setTimeout(0);
      handlers[name]().then(answer, (err: Error) => answer({ ok: false, code: err instanceof PortcullisError ? err.code : 'PCL_RELOAD_FAILED', message: err.message }));
    };
    socket.on('data', onData);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  chmodSync(path, 0o600);
  return {
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of open) socket.destroy();
      }),
  };
}
