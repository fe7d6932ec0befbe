import { connect, createServer, type Server, type Socket } from 'node:net';
import { chmodSync, mkdirSync, unlinkSync } from 'node:fs';
import { PortcullisError } from '../errors.js';
import { controlSocketFile, type InstanceRecord } from '../state/index.js';
import type { ReloadResult } from './reloader.js';
import { parseDenyChange, parseKeyRevocation, type DenyChange, type KeyRevocation } from './store-changes.js';
import { parseDenyEdit, parseKeyEdit, type DenyEdit, type KeyEdit } from './store-edits.js';

/**
 * The local control channel of a running instance: a Unix socket at
 * `dataDir/control.sock`, mode 0600, so only the user running Portcullis can
 * use it. One JSON request per connection, one JSON answer. It also marks the
 * dataDir as taken: a second instance on the same dataDir is refused.
 * Requests are validated strictly: anything malformed gets a usage answer,
 * never a crash or a partial effect.
 */

export interface ControlHandlers {
  reload(): Promise<ReloadResult>;
  /** Re-reads the deny list under dataDir and applies it; with `change`, a deny entry the command could not save, applied on top and kept until saved; `edit`: what the command changed (store-edits.ts). */
  denyList(change: DenyChange | null, edit: DenyEdit | null): Promise<ReloadResult>;
  /** Re-reads the API keys under dataDir and applies them; with `change`, a revocation the command could not save, applied on top and kept until saved; `edit`: what the command changed. */
  apiKeys(change: KeyRevocation | null, edit: KeyEdit | null): Promise<ReloadResult>;
  /** Writes every process's summaries under dataDir (client inventory, weak clients), for a report to read. */
  flush(): Promise<ReloadResult>;
  /** Describes the instance (`portcullis status`): the record it keeps in the fleet registry. */
  status(): Promise<ControlAnswer>;
}

/** An answer; `status` is there in the answer to a status request. */
export type ControlAnswer = ReloadResult & { readonly status?: InstanceRecord };

/**
 * What a client may send. `unpersisted` carries a tightening change a
 * command could not save under dataDir (full disk, read-only filesystem):
 * the instance applies it and keeps trying to save it.
 */
export type ControlRequest =
  | { readonly command: 'reload' | 'flush' | 'status' }
  | { readonly command: 'deny-list'; readonly unpersisted?: DenyChange; readonly edit?: DenyEdit }
  | { readonly command: 'api-keys'; readonly unpersisted?: KeyRevocation; readonly edit?: KeyEdit };

type Run = (handlers: ControlHandlers) => Promise<ControlAnswer>;

const commandNames: readonly string[] = ['reload', 'deny-list', 'api-keys', 'flush', 'status'] satisfies ControlRequest['command'][];

/** The longest request line read; past it the socket hangs up. A deny entry with its longest note fits. */
const maxRequestChars = 16_384;

/** Validates one request; returns what to run, or the usage message to answer. */
function parseRequest(request: unknown): Run | string {
  const fields = typeof request === 'object' && request !== null && !Array.isArray(request) ? (request as Record<string, unknown>) : null;
  const command = fields?.command;
  if (!fields || typeof command !== 'string' || !commandNames.includes(command)) return `unknown command; send {"command": one of ${commandNames.join(', ')}}`;
  const takesChange = command === 'deny-list' || command === 'api-keys';
  const extra = Object.keys(fields).find((k) => k !== 'command' && !(takesChange && (k === 'unpersisted' || k === 'edit')));
  if (extra !== undefined) return `"${extra}" is not a field of the ${command} request`;
  const raw = fields.unpersisted;
  switch (command) {
    case 'reload':
      return (h) => h.reload();
    case 'flush':
      return (h) => h.flush();
    case 'status':
      return (h) => h.status();
    case 'deny-list': {
      const change = raw === undefined ? null : parseDenyChange(raw);
      const edit = fields.edit === undefined ? null : parseDenyEdit(fields.edit);
      if (typeof change === 'string' || typeof edit === 'string') return typeof change === 'string' ? change : (edit as string);
      return (h) => h.denyList(change, edit);
    }
    default: {
      const change = raw === undefined ? null : parseKeyRevocation(raw);
      const edit = fields.edit === undefined ? null : parseKeyEdit(fields.edit);
      if (typeof change === 'string' || typeof edit === 'string') return typeof change === 'string' ? change : (edit as string);
      return (h) => h.apiKeys(change, edit);
    }
  }
}

/** Asks the instance behind `path` something; rejects with PCL_CONTROL_UNREACHABLE when nobody answers. */
export function sendControl(path: string, request: ControlRequest, timeoutMs = 60_000): Promise<ControlAnswer> {
  return new Promise((resolve, reject) => {
    const socket = connect(path);
    let text = '';
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error('no answer in time')));
    socket.on('connect', () => socket.write(`${JSON.stringify(request)}\n`));
    socket.on('data', (d: Buffer) => (text += d.toString()));
    socket.on('end', () => {
      try {
        resolve(JSON.parse(text) as ControlAnswer);
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

/**
 * Serves the control socket; rejects with PCL_CONTROL_IN_USE when a live
 * instance already holds it. `beforeEach` runs before every valid request
 * (the instance tries again to save the changes it holds in memory only);
 * it must not reject.
 */
export async function openControlSocket(dataDir: string, handlers: ControlHandlers, beforeEach: () => Promise<void> = async () => {}): Promise<{ close(): Promise<void> }> {
  const path = controlSocketFile(dataDir);
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
    const answer = (result: ControlAnswer) => socket.end(`${JSON.stringify(result)}\n`);
    const onData = (d: Buffer) => {
      text += d.toString();
      const end = text.indexOf('\n');
      if (end > maxRequestChars || (end < 0 && text.length > maxRequestChars)) return socket.destroy();
      if (end < 0) return;
      // one request per connection: whatever follows the first line is ignored
      socket.off('data', onData);
      let request: unknown;
      try {
        request = JSON.parse(text.slice(0, end));
      } catch {
        return answer({ ok: false, code: 'PCL_CLI_USAGE', message: 'not a JSON request' });
      }
      const run = parseRequest(request);
      if (typeof run === 'string') return answer({ ok: false, code: 'PCL_CLI_USAGE', message: run });
      socket.setTimeout(0);
      beforeEach()
        .then(() => run(handlers))
        .then(answer, (err: Error) => answer({ ok: false, code: err instanceof PortcullisError ? err.code : 'PCL_RELOAD_FAILED', message: err.message }));
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
