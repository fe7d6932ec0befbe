import { constants, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { TLSSocket } from 'node:tls';

/** Why the guard ended an HTTP/2 connection: reason codes of the catalog (errors.ts). */
export type Http2Abuse = 'rapid_reset' | 'control_frame_flood' | 'http2_protocol_error';

/**
 * Session errors by which Node reports that it ended a connection because the
 * client broke the protocol (nghttp2's errors: a CONTINUATION flood, a window
 * pushed past 2^31-1, a HEADERS block that does not decompress …; Node's own
 * limit on invalid frames). Sockets that reset or vanish are not abuse.
 */
const protocolErrors: ReadonlySet<string> = new Set(['ERR_HTTP2_ERROR', 'ERR_HTTP2_TOO_MANY_INVALID_FRAMES']);

/**
 * Per-connection HTTP/2 budgets, fixed rather than configured: they only ever
 * stop clients no browser or API client comes near.
 * - Streams the client resets before any answer began (rapid reset,
 *   CVE-2023-44487): 100 at once, then 10 per second. Node's own limit lets
 *   about a thousand through and ends the connection with INTERNAL_ERROR.
 * - PING and SETTINGS frames, each of which costs an answer: 1,000 at once,
 *   then 20 per second (keep-alive pings come every few seconds at most).
 */
export const http2Budgets = Object.freeze({
  resets: Object.freeze({ burst: 100, perSecond: 10 }),
  controlFrames: Object.freeze({ burst: 1_000, perSecond: 20 }),
});

/** How long a connection we ended may take to receive its GOAWAY before its socket is destroyed. */
const goawayLingerMs = 2_000;

/** A token bucket small enough to keep one per connection. */
class Budget {
  #tokens: number;
  #at: number;
  constructor(
    private readonly burst: number,
    private readonly perSecond: number,
  ) {
    this.#tokens = burst;
    this.#at = performance.now();
  }

  /** Spends one token; false when none is left. */
  take(): boolean {
    const now = performance.now();
    this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#at) / 1000) * this.perSecond);
    this.#at = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}

/** Told when the guard ends a connection, to account for it. */
export type AbuseReport = (why: Http2Abuse, detail: string) => void;

interface Guard {
  /** Null once the session has closed (see onSessionClose). */
  socket: TLSSocket | null;
  readonly resets: Budget;
  readonly controlFrames: Budget;
  report: AbuseReport;
  openStreams: number;
  ended: boolean;
}

const kGuard = Symbol('portcullis.http2Guard');
type Guarded = ServerHttp2Session & { [kGuard]: Guard };

function end(session: Guarded, why: Http2Abuse, detail: string): void {
  const guard = session[kGuard];
  if (guard.ended) return;
  guard.ended = true;
  guard.report(why, detail);
  // RFC 9113 §5.4.1: GOAWAY with the reason, then close the TCP connection (Node flushes the
  // GOAWAY first; the 'error' this emits ends in closeSoon)
  session.destroy(new Error(`HTTP/2 connection ended: ${why} (${detail})`), constants.NGHTTP2_ENHANCE_YOUR_CALM);
}

/** Closes the socket once a last frame had a moment to leave, also when the client does not read. */
function closeSoon(socket: TLSSocket): void {
  if (!socket.destroyed) setTimeout(() => socket.destroy(), goawayLingerMs).unref();
}

const reportNothing: AbuseReport = () => {};

function onSessionError(this: Guarded, err: Error & { code?: string }): void {
  const guard = this[kGuard];
  if (!guard.ended && protocolErrors.has(err.code ?? '')) {
    guard.ended = true;
    guard.report('http2_protocol_error', err.message);
  }
  if (guard.socket) closeSoon(guard.socket);
}

/**
 * Node (20 to 24) leaves a closed session's idle timer running: closeSession() marks the
 * session destroyed before it calls setTimeout(0), which then returns early. The timer keeps
 * the session reachable until timeouts.idle has passed, so from here on the session must not
 * keep the connection's objects (TLS socket, raw socket, connection info) alive with it.
 */
function onSessionClose(this: Guarded): void {
  const guard = this[kGuard];
  if (guard.socket) closeSoon(guard.socket);
  guard.socket = null;
  guard.report = reportNothing;
}

type GuardedStream = ServerHttp2Stream & { [kGuard]: Guard };

function onStream(this: Guarded, stream: ServerHttp2Stream): void {
  const guard = this[kGuard];
  guard.openStreams++;
  // Node detaches a closed stream from its session: the stream keeps its own way to the guard
  (stream as GuardedStream)[kGuard] = guard;
  stream.on('aborted', onAborted);
  stream.on('close', onStreamClose);
}

/** The stream closed while its answer was still being written: by the client, or by us (a stalled reader). */
function onAborted(this: GuardedStream): void {
  if (!this.headersSent && this.session) prematureReset(this.session as Guarded);
}

function onStreamClose(this: GuardedStream): void {
  this[kGuard].openStreams--;
}

function prematureReset(session: Guarded): void {
  if (!session[kGuard].resets.take()) end(session, 'rapid_reset', `more than ${http2Budgets.resets.burst} streams reset before their answer began`);
}

function onControlFrame(this: Guarded): void {
  if (!this[kGuard].controlFrames.take()) end(this, 'control_frame_flood', `more than ${http2Budgets.controlFrames.burst} PING and SETTINGS frames`);
}

/**
 * Watches one HTTP/2 connection: enforces the budgets above (GOAWAY with
 * ENHANCE_YOUR_CALM, then the socket is closed, and `report` is told), and
 * closes the TCP connection whenever the session ends, errs or stops being
 * served. Node 20 and 22 leave the socket open after a connection error
 * (nghttp2 stops reading, so the client's FIN is never seen): an idle
 * session with streams still open is therefore pinged, and destroyed when
 * no answer comes within `idleMs` (a dead session cannot send the PING).
 */
export function guardHttp2Session(session: ServerHttp2Session, socket: TLSSocket, idleMs: number, report: AbuseReport): void {
  const guarded = session as Guarded;
  const guard: Guard = {
    socket,
    resets: new Budget(http2Budgets.resets.burst, http2Budgets.resets.perSecond),
    controlFrames: new Budget(http2Budgets.controlFrames.burst, http2Budgets.controlFrames.perSecond),
    report,
    openStreams: 0,
    ended: false,
  };
  guarded[kGuard] = guard;
  session.on('stream', onStream);
  session.on('ping', onControlFrame);
  session.on('remoteSettings', onControlFrame);
  // an error or the end of the session ends the connection: never a socket left behind
  session.on('error', onSessionError);
  session.once('close', onSessionClose);
  session.setTimeout(idleMs, () => {
    // an idle session is closed (GOAWAY); one with streams open (a long poll, a slow upstream) is
    // asked for a PING instead: a live client answers at once, a vanished one cannot, nor can a
    // session Node stopped serving after a protocol error. The streams keep their own deadlines.
    if (guard.openStreams === 0) {
      session.close();
      return;
    }
    if (session.destroyed) return;
    const dead = setTimeout(() => session.destroy(), idleMs).unref();
    try {
      session.ping((err) => {
        if (!err) clearTimeout(dead);
      });
    } catch {
      // too many pings outstanding, or already closing: the timer decides
    }
  });
}
