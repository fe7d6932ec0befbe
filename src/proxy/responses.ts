import { randomUUID } from 'node:crypto';
import { STATUS_CODES, type ServerResponse } from 'node:http';
import { constants as http2, type Http2ServerRequest } from 'node:http2';
import type { Duplex } from 'node:stream';
import type { Site } from '../config/index.js';
import { endWithLinger } from '../edge/index.js';
import { reasonCatalog, type Reason } from '../errors.js';
import { contextOf, type HeaderMap, type ProxyState, type RequestContext } from './request-context.js';

/** Fields of every response the proxy writes itself. */
function ownHeaders(requestId: string, hsts: string | null, contentType: string, length: number): HeaderMap {
  const headers: HeaderMap = {
    'content-type': contentType,
    'content-length': String(length),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    'x-request-id': requestId,
  };
  if (hsts) headers['strict-transport-security'] = hsts;
  return headers;
}

function errorBody(reason: Reason, requestId: string, detail: string | null): { status: number; text: string } {
  const status = reasonCatalog[reason].status;
  return { status, text: JSON.stringify({ error: STATUS_CODES[status], reason, requestId, ...(detail ? { detail } : {}) }) };
}

/** Answers with a JSON body; used by the builtin upstreams. */
export function sendJson(ctx: RequestContext, status: number, body: unknown): void {
  const text = JSON.stringify(body, null, 2);
  ctx.status = status;
  ctx.bytesOut = Buffer.byteLength(text);
  ctx.res.writeHead(status, ownHeaders(ctx.id, ctx.hsts, 'application/json', ctx.bytesOut));
  ctx.res.end(text);
}

/**
 * Cuts a response that cannot be finished, so that the client knows it is
 * incomplete: HTTP/1.1 closes the connection; HTTP/2 resets the stream with
 * `code` (Node's own destroy resets with NO_ERROR, which a client may take for
 * a complete response when no Content-Length tells it otherwise): INTERNAL_ERROR
 * when the upstream failed, CANCEL when we gave up on the client.
 */
export function cutResponse(ctx: RequestContext, code: number = http2.NGHTTP2_INTERNAL_ERROR): void {
  if (ctx.req.httpVersionMajor === 2) (ctx.req as Http2ServerRequest).stream.close(code);
  else ctx.res.destroy();
}

/**
 * Ends a request with its reason: `{error, reason, requestId[, detail]}` and the
 * reason's status. Once response headers went out nothing can be said any more,
 * so the response is cut instead and the client sees a truncated one.
 */
export function sendError(ctx: RequestContext, reason: Reason, detail: string | null = null): void {
  ctx.reason = reason;
  ctx.detail = detail;
  if (ctx.res.headersSent) {
    cutResponse(ctx);
    return;
  }
  const { status, text } = errorBody(reason, ctx.id, detail);
  ctx.status = status;
  ctx.bytesOut = Buffer.byteLength(text);
  const headers = ownHeaders(ctx.id, ctx.hsts, 'application/json', ctx.bytesOut);
  ctx.res.writeHead(status, ctx.responseHeaders ? { ...headers, ...ctx.responseHeaders } : headers);
  ctx.res.end(text);
}

const clientErrorReasons: Record<string, Reason> = {
  HPE_HEADER_OVERFLOW: 'headers_too_large',
  ERR_HTTP_REQUEST_TIMEOUT: 'request_timeout',
};


/**
 * Answers an HTTP/1.1 request the parser refused (too large, too slow,
 * malformed) and closes the connection with a bounded linger, so the answer
 * is not lost in a reset as with Node's default handler (write + destroy).
 * Anything else Node reports as a client error (a TLS handshake that timed
 * out, a reset) is not an HTTP exchange: the socket is destroyed. Logged as
 * request_refused and counted like any answered request; when the refusal
 * interrupts a request in flight (a body that stalled), that request's
 * record carries the answer instead.
 */
export function refuseUnparsable(state: ProxyState, err: Error & { code?: string }, socket: Duplex, site: Site): void {
  const code = err.code ?? '';
  const http = code.startsWith('HPE_') || code in clientErrorReasons;
  if (!http || !socket.writable || (socket as Duplex & { bytesWritten?: number }).bytesWritten) {
    socket.destroy();
    return;
  }
  const reason = clientErrorReasons[code] ?? 'malformed_request';
  // the request a refusal interrupts (a body that stalled): its record carries the answer
  const response = (socket as Duplex & { _httpMessage?: ServerResponse | null })._httpMessage;
  const inFlight = response ? contextOf(response) : undefined;
  const requestId = inFlight?.id ?? randomUUID();
  const { status, text } = errorBody(reason, requestId, null);
  const headers = ownHeaders(requestId, site.hsts, 'application/json', Buffer.byteLength(text));
  let head = `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nconnection: close\r\n`;
  for (const name in headers) head += `${name}: ${headers[name] as string}\r\n`;
  endWithLinger(socket, `${head}\r\n${text}`);
  state.log.info({ event: 'request_refused', reason, requestId, site: site.id, detail: code }, 'HTTP request refused by the parser');
  if (inFlight) {
    inFlight.status = status;
    inFlight.reason = reason;
  } else state.metrics.requestDone(site.id, '', status, 0, null);
}
