import type { UpstreamTarget } from '../config/index.js';
import type { RequestContext } from './request-context.js';
import { sendJson } from './responses.js';

/**
 * `builtin:whoami` answers with the caller's connection as the proxy saw it
 * and the request exactly as it would have been forwarded. The request body
 * is read and counted, never kept.
 */
function whoami(ctx: RequestContext): void {
  let bodyBytes = 0;
  ctx.req.on('data', (chunk: Buffer) => {
    bodyBytes += chunk.length;
  });
  ctx.req.on('end', () => {
    ctx.bytesIn = bodyBytes;
    const c = ctx.conn;
    const client = ctx.client;
    sendJson(ctx, 200, {
      requestId: ctx.id,
      // which process answered: with workers > 1, each worker has its own
      pid: process.pid,
      site: ctx.site?.id ?? null,
      route: ctx.route?.path ?? null,
      tls: { version: c.tlsVersion, cipher: c.cipher, group: c.group, sni: c.serverName, alpn: c.alpn, resumed: c.resumed },
      client: {
        address: c.remoteAddress,
        port: c.remotePort,
        certificate: client === null ? null : client.status === 'none' ? { status: 'none' } : { status: client.status, ...client.identity, subjectAttributes: undefined },
      },
      request: { method: ctx.req.method, target: ctx.target, httpVersion: ctx.req.httpVersion, bodyBytes },
      headers: ctx.upstreamHeaders,
    });
  });
}

export function answerBuiltin(ctx: RequestContext, upstream: UpstreamTarget): void {
  // the only builtin today; the schema rejects other names
  if (upstream.kind === 'builtin') whoami(ctx);
}
