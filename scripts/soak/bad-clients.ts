/**
 * The soak's misbehaving clients. Each operation is bounded in time and
 * records whether it got the refusal docs/errors.md and docs/mtls.md
 * document for it; a hang counts as the wrong answer.
 */
import { execFile, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { connect as h2connect, constants as h2 } from 'node:http2';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { flag, frame, frameType, goawayCode, rawH2, requestBlock, sendRapidResets, type Frame, type RawH2 } from '../../test/helpers/h2-raw.js';
import type { Leaf } from '../../test/helpers/pki.js';
import { h1, type Target } from './good-clients.js';
import { apiHost, headersTimeoutMs, mtlsHost } from './setup.js';

/** How long a refused connection may take to end (the handshake timeout is 10 s). */
const refusalBoundMs = 15_000;

export interface BadTarget extends Target {
  readonly caFile: string;
  /** openssl processes in flight, killed by PID if the soak stops early. */
  readonly children: Set<ChildProcess>;
}

/** What a refusal looked like; `refused` is whether it is the documented one. */
interface Verdict {
  readonly refused: boolean;
  readonly got: string;
}

async function recorded(target: Target, kind: string, run: () => Promise<Verdict>): Promise<void> {
  const startedAt = Date.now();
  let verdict: Verdict;
  try {
    verdict = await run();
  } catch (err) {
    verdict = { refused: false, got: `${(err as NodeJS.ErrnoException).code ?? ''} ${(err as Error).message}`.trim() };
  }
  target.tally.badOutcome(kind, startedAt, verdict.refused, verdict.got);
}

const reasonOf = (text: string): string | null => {
  try {
    return (JSON.parse(text) as { reason?: string }).reason ?? null;
  } catch {
    return null;
  }
};

/** A client-certificate refusal over HTTP/1.1: the status and reason code in the JSON body, and `Connection: close`. */
export function mtlsRefused(target: Target, kind: string, cert: Leaf | null, status: number, reason: string): Promise<void> {
  return recorded(target, kind, async () => {
    const a = await h1(target, { host: mtlsHost, path: '/whoami?i=bad', agent: { cert }, timeoutMs: refusalBoundMs });
    const got = `${a.status} ${reasonOf(a.text) ?? a.text.slice(0, 80)} connection: ${String(a.headers.connection)}`;
    return { refused: a.status === status && reasonOf(a.text) === reason && a.headers.connection === 'close', got };
  });
}

/** No certificate over HTTP/2: 401 no_certificate, then GOAWAY and the session closed by the server. */
export function mtlsRefusedH2(target: Target, kind: string): Promise<void> {
  return recorded(
    target,
    kind,
    () =>
      new Promise<Verdict>((resolve) => {
        const session = h2connect(`https://${mtlsHost}:${target.port}`, {
          createConnection: () => tlsConnect({ host: '127.0.0.1', port: target.port, servername: mtlsHost, ca: target.ca, ALPNProtocols: ['h2'] }),
        });
        let status = 0;
        let body = '';
        let goaway: number | null = null;
        const timer = setTimeout(() => {
          session.destroy();
          resolve({ refused: false, got: `still open after ${refusalBoundMs} ms (status ${status}, GOAWAY ${goaway})` });
        }, refusalBoundMs);
        session.on('error', () => {});
        session.on('goaway', (code) => (goaway = code));
        session.on('close', () => {
          clearTimeout(timer);
          const got = `${status} ${reasonOf(body) ?? body.slice(0, 80)}, GOAWAY ${goaway}`;
          resolve({ refused: status === 401 && reasonOf(body) === 'no_certificate' && goaway !== null, got });
        });
        const stream = session.request({ [h2.HTTP2_HEADER_PATH]: '/whoami?i=bad' });
        stream.on('response', (h) => (status = Number(h[':status'])));
        stream.setEncoding('utf8');
        stream.on('data', (c: string) => (body += c));
        stream.on('error', () => {});
        stream.end();
      }),
  );
}

interface Exchange {
  readonly answer: Buffer;
  readonly closedByServer: boolean;
  readonly timedOut: boolean;
  readonly error: string | null;
}

/** Writes `data` once `ready` fires, then collects what comes back until the connection closes or `boundMs` passes. */
function exchange(socket: Socket | TLSSocket, ready: 'connect' | 'secureConnect', data: Buffer | null, boundMs = refusalBoundMs, then?: (s: Socket) => void): Promise<Exchange> {
  return new Promise((resolve) => {
    const answer: Buffer[] = [];
    let closedByServer = false;
    let timedOut = false;
    let error: string | null = null;
    const timer = setTimeout(() => {
      timedOut = true;
      socket.destroy();
    }, boundMs);
    socket.on('data', (d: Buffer) => answer.push(d));
    socket.on('end', () => (closedByServer = true));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      error ??= err.code ?? err.message;
      // ECONNRESET is the server ending it too
      if (err.code === 'ECONNRESET') closedByServer = true;
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ answer: Buffer.concat(answer), closedByServer, timedOut, error });
    });
    socket.once(ready, () => {
      if (data) socket.write(data);
      then?.(socket);
    });
  });
}

/** Plain HTTP to the TLS port: `HTTP/1.1 400` with a one-line body, then close. */
export function plaintext(target: Target, kind: string): Promise<void> {
  return recorded(target, kind, async () => {
    const r = await exchange(netConnect(target.port, '127.0.0.1'), 'connect', Buffer.from(`GET /api/fast?i=plain HTTP/1.1\r\nHost: ${apiHost}\r\nUser-Agent: soak\r\n\r\n`));
    const first = r.answer.toString('latin1').split('\r\n')[0] ?? '';
    return { refused: first.startsWith('HTTP/1.1 400') && r.closedByServer && !r.timedOut, got: `"${first}" ${r.closedByServer ? 'closed by server' : r.timedOut ? 'timed out' : 'closed'}` };
  });
}

/** Bytes that are no TLS record (first byte below 0x14): closed without an answer. */
export function garbage(target: Target, kind: string): Promise<void> {
  return recorded(target, kind, async () => {
    const bytes = randomBytes(256);
    bytes[0] = bytes[0]! % 0x14;
    const r = await exchange(netConnect(target.port, '127.0.0.1'), 'connect', bytes);
    return { refused: r.answer.length === 0 && r.closedByServer && !r.timedOut, got: `${r.answer.length} bytes back (${r.answer.subarray(0, 8).toString('hex')}), ${r.timedOut ? 'timed out' : r.closedByServer ? 'closed by server' : 'closed'}` };
  });
}

/** A Node TLS client that must fail its handshake with the alert named by `alert` (an OpenSSL error code fragment). */
export function handshakeRefused(target: Target, kind: string, options: { minVersion?: 'TLSv1'; maxVersion: 'TLSv1.1' | 'TLSv1.2'; ciphers: string }, alert: RegExp): Promise<void> {
  return recorded(target, kind, async () => {
    const socket = tlsConnect({ host: '127.0.0.1', port: target.port, servername: apiHost, ca: target.ca, ...options });
    const r = await exchange(socket, 'secureConnect', null, refusalBoundMs, (s) => s.destroy());
    if (r.timedOut) return { refused: false, got: 'no answer (timed out)' };
    return { refused: r.error !== null && alert.test(r.error), got: r.error ?? 'handshake completed' };
  });
}

/** `openssl s_client -tls1` (an independent TLS stack): refused with a protocol_version alert. */
export function opensslTls1(target: BadTarget, kind: string): Promise<void> {
  return recorded(
    target,
    kind,
    () =>
      new Promise<Verdict>((resolve) => {
        const child = execFile(
          'openssl',
          ['s_client', '-brief', '-connect', `127.0.0.1:${target.port}`, '-servername', apiHost, '-tls1', '-cipher', 'DEFAULT@SECLEVEL=0', '-CAfile', target.caFile],
          { timeout: refusalBoundMs, encoding: 'utf8' },
          (err, stdout, stderr) => {
            target.children.delete(child);
            const text = `${stdout}${stderr}`;
            const alert = /alert protocol version/i.test(text);
            const got = /CONNECTION ESTABLISHED/.test(text) ? 'handshake completed' : alert ? 'alert protocol version' : (text.split('\n').find((l) => /error|alert/i.test(l)) ?? `exit ${String(err?.code)}`);
            resolve({ refused: alert && !/CONNECTION ESTABLISHED/.test(text), got: got.trim().slice(0, 160) });
          },
        );
        target.children.add(child);
        child.stdin?.on('error', () => {});
        child.stdin?.end();
      }),
  );
}

/** Connect and hang up, as a port scanner does: with FIN (the server must close its side) or with RST. */
export function scanner(target: Target, kind: string, how: 'fin' | 'rst'): Promise<void> {
  return recorded(target, kind, async () => {
    const socket = netConnect({ port: target.port, host: '127.0.0.1', allowHalfOpen: true });
    let connected = false;
    const r = await exchange(socket, 'connect', null, refusalBoundMs, (s) => {
      connected = true;
      if (how === 'fin') s.end();
      else s.resetAndDestroy();
    });
    if (how === 'rst') return { refused: connected, got: connected ? 'connected, reset' : `not connected: ${r.error}` };
    return { refused: connected && r.closedByServer && !r.timedOut && r.answer.length === 0, got: `${r.answer.length} bytes back, ${r.timedOut ? 'not closed by the server' : r.closedByServer ? 'closed by server' : 'closed'}` };
  });
}

/**
 * Slowloris: a verified TLS connection that sends a request line and then one
 * header field a second, never finishing. `timeouts.headers` answers it 408
 * request_timeout and closes it.
 */
export function slowloris(target: Target, kind: string): Promise<void> {
  return recorded(target, kind, async () => {
    const socket = tlsConnect({ host: '127.0.0.1', port: target.port, servername: apiHost, ca: target.ca, ALPNProtocols: ['http/1.1'] });
    let trickle: NodeJS.Timeout | undefined;
    const r = await exchange(socket, 'secureConnect', Buffer.from(`GET /api/fast?i=slowloris HTTP/1.1\r\nHost: ${apiHost}\r\n`), headersTimeoutMs + 35_000, (s) => {
      let n = 0;
      trickle = setInterval(() => {
        if (!s.destroyed) s.write(`X-Slow-${n++}: y\r\n`);
      }, 1000);
    });
    clearInterval(trickle);
    const text = r.answer.toString('utf8');
    const first = text.split('\r\n')[0] ?? '';
    const reason = reasonOf(text.slice(text.indexOf('\r\n\r\n') + 4));
    return { refused: first.startsWith('HTTP/1.1 408') && reason === 'request_timeout' && r.closedByServer, got: `"${first}" ${reason} ${r.timedOut ? 'timed out' : r.closedByServer ? 'closed by server' : 'closed'}` };
  });
}

/** Runs `fn` with a scope for rawH2 whose clean-ups run afterwards. */
async function scoped<T>(fn: (scope: { after(f: () => unknown): void }) => Promise<T>): Promise<T> {
  const cleanups: (() => unknown)[] = [];
  try {
    return await fn({ after: (f) => void cleanups.push(f) });
  } finally {
    for (const f of cleanups) await f();
  }
}

/** Watches how the server ends a raw HTTP/2 connection: a FIN (clean close) or a reset, in which a GOAWAY can be lost. */
function transportEnd(raw: RawH2): () => string {
  let fin = false;
  let error: string | null = null;
  raw.socket.on('end', () => (fin = true));
  raw.socket.on('error', (err: NodeJS.ErrnoException) => (error ??= err.code ?? err.message));
  return () => `${fin ? 'FIN' : 'no FIN'}${error ? `, ${error}` : ''}, ${raw.frames.length} frames received (${[...new Set(raw.frames.map((f) => f.type))].join(',')})`;
}

/** The GOAWAY's code, or an Error saying how the connection ended without one. */
async function goawayOrEnd(raw: RawH2, goaway: Promise<Frame>, sent: string, ended: () => string): Promise<Verdict> {
  let code: number;
  try {
    code = goawayCode(await goaway);
  } catch (err) {
    await raw.closedByServer(refusalBoundMs).catch(() => {});
    return { refused: false, got: `no GOAWAY (${(err as Error).message}) after ${sent}; transport: ${ended()}` };
  }
  await raw.closedByServer(refusalBoundMs);
  return { refused: code === h2.NGHTTP2_ENHANCE_YOUR_CALM, got: `GOAWAY code ${code} after ${sent}; transport: ${ended()}` };
}

/** An HTTP/2 session for a flood: the raw connection, how its transport ended, and the GOAWAY the flood should earn (within refusalBoundMs). */
async function floodSession(scope: { after(f: () => unknown): void }, target: BadTarget): Promise<{ raw: RawH2; ended: () => string; goaway: Promise<Frame> }> {
  const raw = await rawH2(scope, target.port, apiHost, target.caFile);
  const goaway = raw.frameWhere((f) => f.type === frameType.goaway, refusalBoundMs);
  goaway.catch(() => {});
  return { raw, ended: transportEnd(raw), goaway };
}

/** HEADERS + RST_STREAM pairs (CVE-2023-44487) until the server sends GOAWAY: ENHANCE_YOUR_CALM, then the TCP connection closed. */
export function rapidReset(target: BadTarget, kind: string): Promise<void> {
  return recorded(target, kind, () =>
    scoped(async (scope) => {
      const { raw, ended, goaway } = await floodSession(scope, target);
      const block = requestBlock(apiHost, '/api/fast?i=rapid-reset');
      const streams = await sendRapidResets(raw, block);
      return goawayOrEnd(raw, goaway, `${streams} streams`, ended);
    }),
  );
}

/** PING frames in batches of 100, reading the ACKs: GOAWAY ENHANCE_YOUR_CALM, then closed. */
export function pingFlood(target: BadTarget, kind: string): Promise<void> {
  return recorded(target, kind, () =>
    scoped(async (scope) => {
      const { raw, ended, goaway } = await floodSession(scope, target);
      const batch = Buffer.concat(Array.from({ length: 100 }, () => frame(frameType.ping, 0, 0, Buffer.alloc(8))));
      const acks = () => raw.frames.filter((f) => f.type === frameType.ping && (f.flags & flag.ack) !== 0).length;
      let sent = 0;
      for (let i = 1; i <= 100 && !raw.socket.destroyed && !raw.frames.some((f) => f.type === frameType.goaway); i++) {
        raw.write(batch);
        sent += 100;
        await raw.frameWhere(() => acks() >= i * 100 || raw.frames.some((f) => f.type === frameType.goaway), 5000).catch(() => {});
      }
      return goawayOrEnd(raw, goaway, `${sent} PINGs`, ended);
    }),
  );
}
