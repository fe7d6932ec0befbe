import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Site } from '../config/index.js';
import { reasonCatalog, type Reason } from '../errors.js';
import type { HeaderMap, RequestContext } from './request-context.js';

/** Fields of every response the proxy writes itself. */
function ownHeaders(ctx: RequestContext, contentType: string, length: number): HeaderMap {
  const headers: HeaderMap = {
    'content-type': contentType,
    'content-length': String(length),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    'x-request-id': ctx.id,
  };
  const hsts = ctx.hsts;
  if (hsts) headers['strict-transport-security'] = hsts;
  return headers;
}

/** Answers with a JSON body; used by the builtin upstreams. */
export function sendJson(ctx: RequestContext, status: number, body: unknown): void {
  const text = JSON.stringify(body, null, 2);
  ctx.status = status;
  ctx.res.writeHead(status, ownHeaders(ctx, 'application/json', Buffer.byteLength(text)));
  ctx.res.end(text);
}

/**
 * Ends a request with its reason: `{error, reason, requestId[, detail]}` and the
 * reason's status. Once response headers went out nothing can be said any more,
 * so the stream is cut instead and the client sees a truncated response.
 */
export function sendError(ctx: RequestContext, reason: Reason, detail: string | null = null): void {
  ctx.reason = reason;
  ctx.detail = detail;
  if (ctx.res.headersSent) {
    ctx.res.destroy();
    return;
  }
  const status = reasonCatalog[reason].status;
  ctx.status = status;
  const body = { error: STATUS_CODES[status], reason, requestId: ctx.id, ...(detail ? { detail } : {}) };
  const text = JSON.stringify(body);
  ctx.res.writeHead(status, ownHeaders(ctx, 'application/json', Buffer.byteLength(text)));
  ctx.res.end(text);
}

const clientErrorReasons: Record<string, Reason> = {
  HPE_HEADER_OVERFLOW: 'headers_too_large',
  ERR_HTTP_REQUEST_TIMEOUT: 'request_timeout',
};

/**
 * Answers an HTTP/1.1 request the parser refused (too large, too slow, malformed)
 * and closes the connection gracefully, so the answer is not lost in a reset
 * as with Node's default handler (write + destroy).
 */
export function answerClientError(err: Error & { code?: string }, socket: Duplex, site: Site): void {
  if (!socket.writable || (socket as Duplex & { bytesWritten?: number }).bytesWritten) {
    socket.destroy();
    return;
  }
  const reason = clientErrorReasons[err.code ?? ''] ?? 'malformed_request';
  const status = reasonCatalog[reason].status;
  const body = JSON.stringify({ error: STATUS_CODES[status], reason });
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n` +
      `Strict-Transport-Security: ${site.hsts}\r\nX-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n${body}`,
  );
}
