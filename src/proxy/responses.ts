import { STATUS_CODES } from 'node:http';
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
