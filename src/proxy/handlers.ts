import { ServerResponse, type IncomingMessage } from 'node:http';
import { constants as http2, Http2ServerRequest } from 'node:http2';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { connectionOf, connectionOfSocket } from '../tls/index.js';
import { recordWhenDone } from './access-record.js';
import { runPipeline } from './pipeline.js';
import { clientLeft, RequestContext, type ProxyRequest, type ProxyResponse, type ProxyState } from './request-context.js';
import { cutResponse, refuseUnparsable, sendError } from './responses.js';

/**
 * Node's HTTP/1 parser also takes "HTTP/0.9" and "HTTP/2.0" request lines,
 * and the code below tells HTTP/2 from HTTP/1.1 by httpVersionMajor: such a
 * request was read as an HTTP/2 stream and threw outside any try (an
 * uncaught exception, the process exited; found by scripts/fuzz.ts). It is
 * refused as the parser refuses other versions: 400 malformed_request, closed.
 */
function refusedVersion(state: ProxyState, req: ProxyRequest, socket: Duplex): boolean {
  if (req instanceof Http2ServerRequest || req.httpVersionMajor === 1) return false;
  const site = connectionOfSocket(req.socket as TLSSocket)?.site;
  if (site) refuseUnparsable(state, Object.assign(new Error(`HTTP/${req.httpVersion} is not HTTP/1.x`), { code: 'HPE_INVALID_VERSION' }), socket, site);
  else socket.destroy();
  return true;
}

/** The server's 'request' listener (HTTP/1.1 and HTTP/2 alike). */
export function handleRequest(state: ProxyState, req: ProxyRequest, res: ProxyResponse): void {
  if (refusedVersion(state, req, req.socket)) return;
  const conn = connectionOf(req);
  if (!conn) {
    // every TLS socket is described before its first request; anything else is a bug
    state.log.error({ url: req.url }, 'request on an undescribed connection');
    res.destroy();
    return;
  }
  const ctx = new RequestContext(req, res, conn, state, null);
  recordWhenDone(ctx);
  if (req.httpVersionMajor === 1) {
    if (state.draining) (res as ServerResponse).shouldKeepAlive = false;
    run(ctx);
    return;
  }
  if (!(req as Http2ServerRequest).stream.endAfterHeaders) armBodyDeadline(ctx, req as Http2ServerRequest);
  // A client may reset a stream in the same packet that opened it (rapid reset, CVE-2023-44487).
  // Starting once that packet has been processed means such a stream costs no upstream request.
  setImmediate(runUnlessGone, ctx);
}

function runUnlessGone(ctx: RequestContext): void {
  if (!clientLeft(ctx.req, ctx.res)) run(ctx);
}

/**
 * HTTP/2 has no request timeout of its own (HTTP/1.1 gets Node's): a request
 * body that has not ended within timeouts.request is answered 408 and its
 * stream closed, so a slow sender cannot hold a stream and an upstream
 * connection open forever. Requests without a body never arm it.
 */
function armBodyDeadline(ctx: RequestContext, req: Http2ServerRequest): void {
  const timer = setTimeout(() => {
    ctx.state.log.info({ requestId: ctx.id, reason: 'request_timeout', remoteAddress: ctx.conn.remoteAddress }, 'request body too slow');
    if (ctx.res.headersSent) {
      cutResponse(ctx, http2.NGHTTP2_CANCEL);
      return;
    }
    // Once our answer is flushed (the stream's own 'finish'; the compat response's comes only at
    // close), reset the stream: CANCEL, because Node sends no RST_STREAM for NO_ERROR at that point.
    req.stream.once('finish', () => req.stream.close(http2.NGHTTP2_CANCEL));
    sendError(ctx, 'request_timeout');
  }, ctx.state.config.timeouts.requestMs);
  const disarm = (): void => clearTimeout(timer);
  req.once('end', disarm);
  ctx.res.once('close', disarm);
}

/**
 * A bug in one request must never take the proxy down: it ends that request
 * with 500 and is logged. A request on a connection whose revocation check is
 * still waiting for a CRL or OCSP answer waits for the decision (bounded by
 * the fetch timeouts); its body stays unread meanwhile.
 */
function run(ctx: RequestContext): void {
  const settling = ctx.conn.settling;
  if (settling) {
    void settling.then((client) => {
      ctx.client = client;
      if (!clientLeft(ctx.req, ctx.res)) runGuarded(ctx);
    });
    return;
  }
  runGuarded(ctx);
}

function runGuarded(ctx: RequestContext): void {
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
  if (refusedVersion(state, req, socket)) return;
  const conn = connectionOf(req);
  if (!conn) {
    socket.destroy();
    return;
  }
  const res = new ServerResponse(req);
  res.assignSocket(socket as never);
  res.shouldKeepAlive = false;
  res.once('finish', () => socket.end());
  const websocket = req.headers.upgrade?.toLowerCase() === 'websocket';
  // Any other Upgrade (h2c …) may be ignored (RFC 9110 §7.8): answer it as a plain request,
  // unless it carries a body, which Node's parser has stopped reading.
  const ctx = new RequestContext(req, res, conn, state, websocket ? head : null);
  recordWhenDone(ctx);
  if (websocket) {
    run(ctx);
    return;
  }
  if (req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined) sendError(ctx, 'unsupported_upgrade');
  else run(ctx);
}
