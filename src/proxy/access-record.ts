import type { AccessLog } from '../telemetry/index.js';
import { requestHasBody, type RequestContext } from './request-context.js';

const round = (ms: number) => Math.round(ms * 100) / 100;

/**
 * The pipeline's last phase: once the response is over (finished or cut),
 * one access-log line with everything the request went through. Attached
 * only when the access log is on.
 */
export function recordWhenDone(ctx: RequestContext, log: AccessLog): void {
  if (requestHasBody(ctx.req)) {
    ctx.req.on('data', (chunk: Buffer) => {
      ctx.bytesIn += chunk.length;
    });
  }
  ctx.res.once('close', () => writeRecord(ctx, log));
}

function writeRecord(ctx: RequestContext, log: AccessLog): void {
  const c = ctx.conn;
  const now = performance.now();
  log.write({
    requestId: ctx.id,
    site: (ctx.site ?? c.site)?.id ?? null,
    route: ctx.route?.path ?? null,
    method: ctx.req.method,
    path: ctx.target || ctx.req.url,
    httpVersion: ctx.req.httpVersion,
    status: ctx.status,
    completed: ctx.res.writableFinished,
    reason: ctx.reason,
    bytesIn: ctx.bytesIn,
    bytesOut: ctx.bytesOut,
    durationMs: round(now - ctx.startedAt),
    upstream: ctx.upstreamOrigin,
    upstreamMs: ctx.upstreamOrigin === null ? null : round((ctx.upstreamEndedAt || now) - ctx.upstreamStartedAt),
    clientAddress: c.remoteAddress,
    tlsVersion: c.tlsVersion,
    cipher: c.cipher,
    alpn: c.alpn,
    sni: c.serverName,
    resumed: c.resumed,
  });
}
