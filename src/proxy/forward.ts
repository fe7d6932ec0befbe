import type { Duplex, Readable, Writable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { ServerResponse, type IncomingHttpHeaders } from 'node:http';
import { constants as http2 } from 'node:http2';
import type { Socket } from 'node:net';
import { clientResponseHeaders } from './header-hygiene.js';
import { clientLeft, requestHasBody, type RequestContext } from './request-context.js';
import { cutResponse, sendError } from './responses.js';
import { classifyUpstreamError } from './upstream-errors.js';
import type { Target, UpstreamGroup } from './upstreams.js';
import { countedBody } from './access-record.js';
import { answerBuiltin } from './builtin-upstreams.js';

/** Sends the request to the route's next upstream and streams the answer back. */
export function forward(ctx: RequestContext): void {
  const group = ctx.state.upstreams.groupFor(ctx.route!);
  const target = group.pick(Date.now()) as Target;
  if (target.pool === null) answerBuiltin(ctx, target.upstream);
  else dispatch(ctx, group, target, 0);
}

function dispatch(ctx: RequestContext, group: UpstreamGroup, target: Target, attempt: number): void {
  const withBody = ctx.upgradeHead === null && requestHasBody(ctx.req);
  const handler = new ForwardHandler(ctx, group, target, attempt, withBody);
  ctx.upstreamOrigin = target.upstream.origin;
  ctx.upstreamStartedAt = performance.now();
  // `servername` is a request option of undici's (lib/core/request.js) missing from its types:
  // without it undici derives the TLS name from each Host header and drops pooled connections when it changes.
  const options: Dispatcher.DispatchOptions & { servername: string } = {
    path: ctx.target,
    method: ctx.req.method as Dispatcher.HttpMethod,
    headers: ctx.upstreamHeaders!,
    // undici also takes an async iterable as body (lib/core/request.js); its types list only streams
    body: withBody ? (ctx.state.accessLog ? (countedBody(ctx) as unknown as Readable) : ctx.req) : null,
    upgrade: ctx.upgradeHead === null ? null : 'websocket',
    servername: target.servername,
  };
  target.pool!.dispatch(options, handler);
}

/**
 * How much of an answer an HTTP/1.1 client may have waiting before the
 * upstream is paused. Pausing at the socket's high-water mark (16 KiB) paused
 * and resumed the upstream on nearly every 64 KiB chunk it sent, and wrote
 * the answer in small pieces: with 256 KiB a 1 MiB answer costs 35 % less CPU
 * (measured in pairs with bench/run.sh's `large` load; 1 MiB would save
 * another 20 %, at four times the memory per slow reader). One answer per HTTP/1.1
 * connection at a time, and at most limits.maxUpstreamConnections exchanges
 * per upstream, so clients that stop reading hold at most 256 KiB plus one
 * chunk each, 80 MiB per upstream with the defaults. HTTP/2 keeps the
 * stream's own high-water mark: a connection carries up to
 * limits.maxConcurrentStreams answers.
 */
const http1ResponseBufferBytes = 256 * 1024;

const clientGone = Object.assign(new Error('the client closed the connection'), { code: 'PCL_CLIENT_GONE' });

const clientStalled = Object.assign(new Error('the client read nothing of the response within timeouts.send'), { code: 'PCL_CLIENT_STALLED' });

/**
 * Streams one upstream exchange back to the client with backpressure both ways:
 * the request body is read as the upstream takes it, and the upstream is paused
 * while the client is slow. A client that goes away aborts the upstream request;
 * one that stops reading for timeouts.send is disconnected (undici's body timeout
 * does not run while we hold the upstream paused).
 */
class ForwardHandler implements Dispatcher.DispatchHandler {
  #controller: Dispatcher.DispatchController | null = null;
  #stall: NodeJS.Timeout | null = null;

  constructor(
    readonly ctx: RequestContext,
    readonly group: UpstreamGroup,
    readonly target: Target,
    readonly attempt: number,
    readonly withBody: boolean,
  ) {
    // Cleared once the exchange ends, so the response's 'close' (access-record.ts) calls
    // clientLeft only when the client left first. (Node 20's HTTP/2 compat response reports
    // writableFinished even after a client reset: no flag is asked.)
    ctx.exchange = this;
  }

  clientLeft(): void {
    if (this.#stall) clearTimeout(this.#stall);
    this.#controller?.abort(clientGone);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    if (clientLeft(this.ctx.req, this.ctx.res)) controller.abort(clientGone);
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    if (statusCode < 200) return;
    const ctx = this.ctx;
    ctx.status = statusCode;
    try {
      ctx.res.writeHead(statusCode, clientResponseHeaders(headers, ctx.hsts, ctx.id));
    } catch (err) {
      // e.g. a field HTTP/2 forbids, or an invalid character: the upstream's answer cannot be relayed
      controller.abort(Object.assign(new Error(`cannot relay the upstream's response headers: ${(err as Error).message}`), { code: 'PCL_UPSTREAM_BAD_HEADERS' }));
    }
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    const res = this.ctx.res as Writable;
    this.ctx.bytesOut += chunk.length;
    const accepted = res.write(chunk);
    if (this.ctx.req.httpVersionMajor === 2 ? !accepted : res.writableLength > http1ResponseBufferBytes) {
      // the client reads slower than the upstream sends: hold the upstream until it drains (closures only on this path)
      controller.pause();
      this.ctx.res.once('drain', () => this.#resume());
      this.#stall = setTimeout(() => this.#stalled(), this.ctx.state.config.timeouts.sendMs);
    }
  }

  #resume(): void {
    if (this.#stall) clearTimeout(this.#stall);
    this.#stall = null;
    this.#controller?.resume();
  }

  #stalled(): void {
    this.#stall = null;
    this.#controller?.abort(clientStalled);
    cutResponse(this.ctx, http2.NGHTTP2_CANCEL);
  }

  onResponseEnd(): void {
    this.ctx.upstreamEndedAt = performance.now();
    this.ctx.exchange = null;
    this.ctx.res.end();
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    const ctx = this.ctx;
    ctx.upstreamEndedAt = performance.now();
    ctx.exchange = null;
    if (err === clientGone) return;
    if (err === clientStalled) {
      ctx.reason = 'send_timeout';
      ctx.state.log.info({ requestId: ctx.id, reason: 'send_timeout', remoteAddress: ctx.conn.remoteAddress }, 'client stopped reading the response');
      return;
    }
    const failure = classifyUpstreamError(err);
    const now = Date.now();
    if (failure.beforeRequest) {
      this.group.markFailed(this.target, now);
      // Nothing reached this upstream and there is no body to replay: try another one once.
      if (this.attempt === 0 && !this.withBody && !ctx.res.headersSent) {
        const next = this.group.pick(now, this.target);
        if (next?.pool) {
          ctx.state.log.warn({ requestId: ctx.id, upstream: this.target.upstream.origin, reason: failure.reason, detail: failure.detail }, 'upstream failed; trying the next one');
          dispatch(ctx, this.group, next, 1);
          return;
        }
      }
    }
    ctx.state.log.warn(
      { requestId: ctx.id, site: ctx.site?.id, route: ctx.route?.path, upstream: this.target.upstream.origin, reason: failure.reason, detail: failure.detail, err: err.message },
      'upstream request failed',
    );
    sendError(ctx, failure.reason, failure.detail);
  }

  /** WebSocket: the upstream agreed to switch protocols; splice the two sockets. */
  onRequestUpgrade(_controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders, upstream: Duplex): void {
    const ctx = this.ctx;
    ctx.upstreamEndedAt = performance.now();
    ctx.exchange = null;
    ctx.status = statusCode;
    const client = ctx.req.socket as Duplex;
    // from here on the raw socket carries WebSocket frames, not HTTP
    if (ctx.res instanceof ServerResponse) ctx.res.detachSocket(client as Socket);
    const fields = clientResponseHeaders(headers, ctx.hsts, ctx.id);
    let head = 'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n';
    for (const name in fields) {
      const value = fields[name] as string | string[];
      for (const v of Array.isArray(value) ? value : [value]) head += `${name}: ${v}\r\n`;
    }
    client.write(`${head}\r\n`);
    if (ctx.upgradeHead && ctx.upgradeHead.length > 0) {
      upstream.write(ctx.upgradeHead);
      ctx.bytesIn += ctx.upgradeHead.length;
    }
    let closed = false;
    let failed = false;
    const closeBoth = (err?: Error): void => {
      if (err instanceof Error) failed = true;
      client.destroy();
      upstream.destroy();
      if (closed) return;
      closed = true;
      ctx.tunnelClosedCleanly = !failed;
      // the response object was detached from the socket: its 'close' ends the request's record
      ctx.res.emit('close');
    };
    client.on('error', closeBoth).on('close', () => closeBoth());
    upstream.on('error', closeBoth).on('close', () => closeBoth());
    // tunnel bytes: the client's are the request's, the upstream's the response's
    client.on('data', (chunk: Buffer) => (ctx.bytesIn += chunk.length));
    upstream.on('data', (chunk: Buffer) => (ctx.bytesOut += chunk.length));
    // a tunnel silent in both directions for upstreamIdle is closed
    const idleMs = ctx.state.config.timeouts.upstreamIdleMs;
    (client as Socket).setTimeout(idleMs, () => closeBoth());
    (upstream as Socket).setTimeout(idleMs, () => closeBoth());
    client.pipe(upstream);
    upstream.pipe(client);
  }
}
