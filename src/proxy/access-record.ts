import type { AccessLog } from '../telemetry/index.js';
import type { ConnectionInfo } from '../tls/index.js';
import type { ClientCertificate } from '../trust/index.js';
import { contextOf, responseCompleted, type ProxyResponse, type RequestContext } from './request-context.js';

const round = (ms: number) => Math.round(ms * 100) / 100;

/**
 * The pipeline's last phase: once the response is over (finished or cut),
 * an upstream exchange still in flight is told that the client left, then
 * the request's metrics and, when the access log is on, one line with
 * everything the request went through. One listener function for every
 * request finds the request through its response: no closure per request.
 */
export function recordWhenDone(ctx: RequestContext): void {
  ctx.res.on('close', responseClosed);
}

function responseClosed(this: ProxyResponse): void {
  const ctx = contextOf(this) as RequestContext;
  // a WebSocket tunnel ends its detached response with a 'close' of its own: one record all the same
  if (ctx.recorded) return;
  ctx.recorded = true;
  ctx.exchange?.clientLeft();
  const state = ctx.state;
  const now = performance.now();
  state.metrics.requestDone((ctx.site ?? ctx.conn.site)?.id ?? '', ctx.route?.path ?? '', ctx.status, (now - ctx.startedAt) / 1000, ctx.upstreamOrigin === null ? null : ((ctx.upstreamEndedAt || now) - ctx.upstreamStartedAt) / 1000);
  if (state.accessLog) writeRecord(ctx, state.accessLog, now);
}

/**
 * The request body as the upstream reads it, counted on the way for the
 * access log. Reading is driven by the consumer (undici), so backpressure
 * holds; a 'data' listener instead would start the body flowing before
 * undici reads it.
 */
export async function* countedBody(ctx: RequestContext): AsyncGenerator<Buffer> {
  for await (const chunk of ctx.req as AsyncIterable<Buffer>) {
    ctx.bytesIn += chunk.length;
    yield chunk;
  }
}

/** The fields of a connection, the same for every request on it: formatted once. */
const connectionFields = new WeakMap<ConnectionInfo, string>();

function fieldsOf(c: ConnectionInfo): string {
  let text = connectionFields.get(c);
  if (text === undefined) {
    text =
      `"clientAddress":${JSON.stringify(c.remoteAddress)},"tlsVersion":${JSON.stringify(c.tlsVersion)},"cipher":${JSON.stringify(c.cipher)},"group":${json(c.group)},` +
      `"alpn":${JSON.stringify(c.alpn)},"sni":${JSON.stringify(c.serverName)},"resumed":${c.resumed},"ja4":${json(c.hello?.ja4)}`;
    connectionFields.set(c, text);
  }
  return text;
}

/** The fields of a verdict on a client certificate (one per connection, or two when its revocation check settled late): formatted once. */
const verdictFields = new WeakMap<ClientCertificate, string>();
const noVerdictFields = '"clientCert":null,"clientSubject":null,"clientSerial":null,"clientFingerprint":null';

function clientFieldsOf(client: ClientCertificate | null): string {
  if (client === null) return noVerdictFields;
  let text = verdictFields.get(client);
  if (text === undefined) {
    const identity = client.status !== 'none' ? client.identity : null;
    text = `"clientCert":${JSON.stringify(client.status)},"clientSubject":${json(identity?.subject)},"clientSerial":${json(identity?.serial)},"clientFingerprint":${json(identity?.fingerprint)}`;
    verdictFields.set(client, text);
  }
  return text;
}

const json = (v: string | null | undefined): string => (v === null || v === undefined ? 'null' : JSON.stringify(v));

/** JSON strings of the few values most fields take (methods, versions, sites, routes, upstreams): quoted once each, at most 512 kept. */
const quotedValues = new Map<string, string>();
function quoted(v: string | null | undefined): string {
  if (v === null || v === undefined) return 'null';
  let text = quotedValues.get(v);
  if (text === undefined) {
    text = JSON.stringify(v);
    if (quotedValues.size < 512) quotedValues.set(v, text);
  }
  return text;
}

function writeRecord(ctx: RequestContext, log: AccessLog, now: number): void {
  // a WebSocket tunnel is complete when it ended without error; other responses when fully written
  const completed = ctx.tunnelClosedCleanly ?? responseCompleted(ctx.req, ctx.res);
  const upstreamMs = ctx.upstreamOrigin === null ? 'null' : String(round((ctx.upstreamEndedAt || now) - ctx.upstreamStartedAt));
  log.write(
    `"requestId":"${ctx.id}","site":${quoted((ctx.site ?? ctx.conn.site)?.id)},"route":${quoted(ctx.route?.path)},` +
      `"method":${quoted(ctx.req.method)},"path":${json(ctx.target || ctx.req.url)},"httpVersion":${quoted(ctx.req.httpVersion)},` +
      `"status":${ctx.status},"completed":${completed},"reason":${quoted(ctx.reason ?? (completed ? null : 'client_closed'))},` +
      `"bytesIn":${ctx.bytesIn},"bytesOut":${ctx.bytesOut},"durationMs":${round(now - ctx.startedAt)},` +
      `"upstream":${quoted(ctx.upstreamOrigin)},"upstreamMs":${upstreamMs},"apiKeyId":${json(ctx.apiKeyId)},${fieldsOf(ctx.conn)},${clientFieldsOf(ctx.client)}`,
  );
}
