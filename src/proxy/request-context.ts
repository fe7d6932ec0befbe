import type { RateBuckets } from '../state/index.js';
import type { ApiKeyRing } from '../access/index.js';
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { constants as http2, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import type { Logger } from 'pino';
import type { Config, Route, Site } from '../config/index.js';
import type { Reason } from '../errors.js';
import type { AccessLog, ConnectionEvents } from '../telemetry/index.js';
import type { Metrics } from '../observe/index.js';
import type { ConnectionInfo } from '../tls/index.js';
import type { ClientCertificate } from '../trust/index.js';
import type { UpstreamSet } from './upstreams.js';

export type ProxyRequest = IncomingMessage | Http2ServerRequest;
export type ProxyResponse = ServerResponse | Http2ServerResponse;
export type HeaderMap = Record<string, string | string[]>;

/** What the pipeline works with for one config generation. */
export interface ProxyState {
  readonly config: Config;
  readonly upstreams: UpstreamSet;
  readonly log: Logger;
  /** Set when the instance is shutting down: HTTP/1.1 connections close after their current response. */
  draining: boolean;
  /** One line per request; null when the access log is off. */
  readonly accessLog: AccessLog | null;
  readonly metrics: Metrics;
  /** Where client-certificate refusals of the request pipeline are accounted for. */
  readonly events: ConnectionEvents;
  /** The API keys in force (replaced as a whole when the store changes). */
  readonly apiKeys: ApiKeyRing;
  /** Rate-limit buckets; they outlive reloads, so a reload does not refill them. */
  readonly rateBuckets: RateBuckets;
}

/** Whether a request carries a body (decided from its framing, before reading any of it). */
export function requestHasBody(req: ProxyRequest): boolean {
  if (req.httpVersionMajor === 2) return !(req as Http2ServerRequest).stream.endAfterHeaders;
  const length = req.headers['content-length'];
  return (length !== undefined && length !== '0') || req.headers['transfer-encoding'] !== undefined;
}

/**
 * Whether the client has already gone: its connection closed, or (HTTP/2) it
 * reset the stream. Node 20's HTTP/2 compat response has no `destroyed`, so
 * the stream is asked.
 */
export function clientLeft(req: ProxyRequest, res: ProxyResponse): boolean {
  return req.httpVersionMajor === 2 ? (req as Http2ServerRequest).stream.destroyed : (res as ServerResponse).destroyed;
}

/**
 * Whether the whole response was handed to the connection. HTTP/2: we ended it
 * and the stream closed without an error code (Node 20's compat response
 * reports itself finished even when the client reset the stream).
 */
export function responseCompleted(req: ProxyRequest, res: ProxyResponse): boolean {
  if (req.httpVersionMajor !== 2) return res.writableFinished;
  return res.writableEnded && (req as Http2ServerRequest).stream.rstCode === http2.NGHTTP2_NO_ERROR;
}

const kContext = Symbol('portcullis.requestContext');
type ResponseWithContext = ProxyResponse & { [kContext]?: RequestContext };

/** The context of the request a response answers (set when the context is made): lets shared listeners find it without a closure per request. */
export function contextOf(res: ProxyResponse): RequestContext | undefined {
  return (res as ResponseWithContext)[kContext];
}

/**
 * Everything one request carries through the pipeline. Created once per
 * request with every field initialised, so its shape never changes.
 */
export class RequestContext {
  readonly id = randomUUID();
  readonly startedAt = performance.now();
  /** Host from the Host header, :authority or an absolute-form target, lower case, no port. */
  host = '';
  /** Host header value forwarded upstream (with port when the client sent one). */
  authority = '';
  /** Normalised path plus query, as forwarded. */
  target = '';
  site: Site | null = null;
  route: Route | null = null;
  upstreamHeaders: HeaderMap | null = null;
  status = 0;
  reason: Reason | null = null;
  /** Extra detail for the reason, e.g. the OpenSSL verification code. */
  detail: string | null = null;
  /** Request body bytes received (counted only when the access log is on). */
  bytesIn = 0;
  /** Response body bytes sent. */
  bytesOut = 0;
  /** The upstream of the last attempt, and when the exchange with it started and ended (performance.now()). */
  upstreamOrigin: string | null = null;
  upstreamStartedAt = 0;
  upstreamEndedAt = 0;
  /** The id of the API key presented (valid or not, when it named one of ours); never the key. */
  apiKeyId: string | null = null;
  /** Fields a refusal adds to its answer (WWW-Authenticate, Retry-After …). */
  responseHeaders: HeaderMap | null = null;
  /** For a WebSocket tunnel: null while none; then whether it ended without a socket error. */
  tunnelClosedCleanly: boolean | null = null;
  /** The final verdict on the connection's client certificate: `conn.client`, or what `conn.settling` settled to before the pipeline ran. */
  client: ClientCertificate | null;
  /** The upstream exchange in flight: told when the client leaves first; null before and after it. */
  exchange: { clientLeft(): void } | null = null;
  /** Set when the response closed and the request was recorded. */
  recorded = false;

  constructor(
    readonly req: ProxyRequest,
    readonly res: ProxyResponse,
    readonly conn: ConnectionInfo,
    readonly state: ProxyState,
    /** Bytes already read past the headers of an upgrade request. */
    readonly upgradeHead: Buffer | null,
  ) {
    this.client = conn.client;
    (res as ResponseWithContext)[kContext] = this;
  }

  /** The site whose HSTS policy applies to this response. */
  get hsts(): string | null {
    return (this.site ?? this.conn.site)?.hsts ?? null;
  }
}
