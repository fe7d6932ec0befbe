import { ServerResponse, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { connectionOf } from '../tls/index.js';
import { runPipeline } from './pipeline.js';
import { RequestContext, type ProxyRequest, type ProxyResponse, type ProxyState } from './request-context.js';
import { sendError } from './responses.js';

/** The server's 'request' listener (HTTP/1.1 and HTTP/2 alike). */
export function handleRequest(state: ProxyState, req: ProxyRequest, res: ProxyResponse): void {
  const conn = connectionOf(req);
  if (!conn) {
    // every TLS socket is described before its first request; anything else is a bug
    state.log.error({ url: req.url }, 'request on an undescribed connection');
    res.destroy();
    return;
  }
  run(new RequestContext(req, res, conn, state, null));
}

/** A bug in one request must never take the proxy down: it ends that request with 500 and is logged. */
function run(ctx: RequestContext): void {
  try {
    runPipeline(ctx);
  } catch (err) {
    ctx.state.log.error({ err, requestId: ctx.id, url: ctx.req.url }, 'request failed inside the proxy');
    sendError(ctx, 'internal_error');
  }
}

/**
 * The server's 'upgrade' listener (HTTP/1.1 only). The request runs through the
 * same pipeline; refusals are written as ordinary responses on the raw socket.
 */
export function handleUpgrade(state: ProxyState, req: IncomingMessage, socket: Duplex, head: Buffer): void {
  // Node hands the socket over without its error listener; a reset must not become an uncaught error.
  socket.on('error', () => socket.destroy());
  const conn = connectionOf(req);
  if (!conn) {
    socket.destroy();
    return;
  }
  const res = new ServerResponse(req);
  res.assignSocket(socket as never);
  res.shouldKeepAlive = false;
  res.once('finish', () => socket.end());
  const ctx = new RequestContext(req, res, conn, state, head);
  if (req.headers.upgrade?.toLowerCase() !== 'websocket') {
    sendError(ctx, 'unsupported_upgrade');
    return;
  }
  run(ctx);
}
