import { presentedApiKey } from '../access/index.js';
import { hasDuplicateHost, hostFromAuthority } from '../config/index.js';
import type { Reason } from '../errors.js';
import type { ServerResponse } from 'node:http';
import type { Http2ServerRequest } from 'node:http2';
import type { ClientIdentity } from '../trust/index.js';
import { forward } from './forward.js';
import { upstreamRequestHeaders } from './header-hygiene.js';
import type { RequestContext } from './request-context.js';
import { parseRequestTarget } from './request-target.js';
import { sendError } from './responses.js';

/**
 * The request pipeline. Each phase reads the context and the compiled config,
 * fills in its part, and returns null to go on or a reason to stop with.
 * The phases, in order, are this list; `decide` is the only runner.
 */
type Phase = (ctx: RequestContext) => Reason | null;

/**
 * One rule for both protocols (limits.maxHeaderBytes, limits.maxHeaderFields):
 * the header list size as RFC 9113 §6.5.2 counts it, name + value + 32 bytes
 * per field, where HTTP/2 counts its pseudo-header fields and HTTP/1.1 its
 * request line as the :method and :path fields it stands for; and the number
 * of fields, pseudo-header fields not counted and every cookie field together
 * counting as one (HTTP/2 clients split cookies into a field each, RFC 9113
 * §8.2.3). Node's own limits sit above these (tls-server.ts), so what they
 * would refuse silently is answered 431 here.
 */
function limitHeaders(ctx: RequestContext): Reason | null {
  const req = ctx.req;
  const raw = req.rawHeaders;
  let size = req.httpVersionMajor === 2 ? 0 : requestLineSize;
  if (req.httpVersionMajor !== 2) size += (req.method as string).length + (req.url as string).length;
  let fields = 0;
  let cookies = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    size += name.length + (raw[i + 1] as string).length + 32;
    if (name.charCodeAt(0) === 58 /* : */) continue;
    if (name.length === 6 && name.toLowerCase() === 'cookie') {
      if (cookies) continue;
      cookies = true;
    }
    fields++;
  }
  const limits = ctx.state.config.limits;
  if (size > limits.maxHeaderBytes) ctx.detail = `${size} bytes; limits.maxHeaderBytes is ${limits.maxHeaderBytes}`;
  else if (fields > limits.maxHeaderFields) ctx.detail = `${fields} fields; limits.maxHeaderFields is ${limits.maxHeaderFields}`;
  else return null;
  return 'headers_too_large';
}

/** What an HTTP/1.1 request line adds besides its method and target: the names of :method and :path, and 32 bytes for each. */
const requestLineSize = ':method'.length + ':path'.length + 64;

/** Normalises the target and finds the site from Host/:authority, bound to the TLS server name. */
function resolveSite(ctx: RequestContext): Reason | null {
  const req = ctx.req;
  const method = req.method;
  if (method === 'CONNECT' || method === 'TRACE') return 'method_not_allowed';
  const target = parseRequestTarget(req.url ?? '');
  if (!target.ok) return target.reason;
  ctx.target = target.path + target.query;
  const authority = target.authority ?? (req.httpVersionMajor === 2 ? ((req as Http2ServerRequest).headers[':authority'] ?? req.headers.host) : req.headers.host);
  if (!authority || hasDuplicateHost(req.rawHeaders)) return 'bad_request_target';
  const host = hostFromAuthority(authority);
  if (host === null) return 'bad_request_target';
  ctx.authority = authority;
  ctx.host = host;

  // The site is the one the TLS handshake selected. A Host of another site is
  // refused, so a handshake with one site's policy cannot reach another site.
  const connSite = ctx.conn.site;
  const hostSite = ctx.state.config.hosts.lookup(host);
  if (hostSite) {
    if (connSite && hostSite.id !== connSite.id) return 'sni_host_mismatch';
    ctx.site = hostSite;
    return null;
  }
  if (connSite?.isDefault) {
    ctx.site = ctx.state.config.defaultSite;
    return ctx.site ? null : 'unknown_host';
  }
  return 'unknown_host';
}

/** Longest path prefix of the site wins (routes are sorted that way at load). */
function matchRoute(ctx: RequestContext): Reason | null {
  const path = ctx.target;
  for (const route of ctx.site!.routes) {
    const p = route.path;
    if (!path.startsWith(p)) continue;
    if (route.segmentBoundary && path.length > p.length) {
      const next = path.charCodeAt(p.length);
      if (next !== 47 /* / */ && next !== 63 /* ? */) continue;
    }
    ctx.route = route;
    return null;
  }
  return 'no_route';
}

/** The verdict on the connection's client certificate as a refusal, or null when it is valid. */
function refusalOf(ctx: RequestContext): Reason | null {
  const client = ctx.client;
  if (client === null || client.status === 'none') return 'no_certificate';
  return client.status === 'invalid' ? client.reason : null;
}

/**
 * `clientAuth.mode: require`: without a valid certificate the connection gets
 * no service, whatever it asks for; it is answered 401/403 with the reason and
 * closed (HTTP/1.1: Connection: close; HTTP/2: GOAWAY). The rejection was
 * logged once, when the connection was made.
 */
function requireClientCertificate(ctx: RequestContext): Reason | null {
  const policy = ctx.site!.clientAuth;
  // A reload changed the site's client-certificate policy since this connection was
  // judged: its verdict means nothing now, and the client must connect again.
  const reason = (ctx.conn.site?.clientAuth?.key ?? null) !== (policy?.key ?? null) ? 'policy_changed' : policy?.mode === 'require' ? refusalOf(ctx) : null;
  if (reason === null) return null;
  if (ctx.req.httpVersionMajor === 2) (ctx.req as Http2ServerRequest).stream.session?.close();
  else (ctx.res as ServerResponse).shouldKeepAlive = false;
  return reason;
}

/**
 * Route-level client checks: a certificate that was presented but is invalid
 * is refused on every route (even `clientCert: optional` ones: it signals a
 * misconfigured or forged client); `clientCert: required` needs a valid one;
 * then the route's allow-list.
 */
function authorizeClient(ctx: RequestContext): Reason | null {
  const route = ctx.route!;
  if (route.clientCert === null) return null;
  const client = ctx.client;
  // invalid certificates were logged with the connection
  if (client?.status === 'invalid') return client.reason;
  if (route.clientCert === 'optional') return null;
  if (client === null || client.status === 'none') {
    ctx.state.events.clientCertRejected(ctx.conn, 'no_certificate', null, { requestId: ctx.id, route: route.path });
    return 'no_certificate';
  }
  if (route.allow && !route.allow.matches((ctx.client as { identity: ClientIdentity }).identity)) {
    ctx.state.events.clientCertRejected(ctx.conn, 'identity_not_allowed', null, { requestId: ctx.id, route: route.path });
    return 'identity_not_allowed';
  }
  return null;
}

/**
 * `apiKeys: required|optional`: the key from the key header must be one of
 * ours, live, allowed on the route, and presented on a connection with the
 * client certificate it is bound to. A key presented on an optional route is
 * checked all the same: a bad key is a broken or hostile client.
 */
function checkApiKey(ctx: RequestContext): Reason | null {
  const mode = ctx.route!.apiKeys;
  if (mode === 'off') return null;
  const presented = presentedApiKey(ctx.req.headers, ctx.state.config.apiKeyHeader);
  if (presented === null) {
    if (mode === 'optional') return null;
    if (ctx.state.config.apiKeyHeader === 'authorization') ctx.responseHeaders = { 'www-authenticate': 'Bearer' };
    return 'missing_api_key';
  }
  const verdict = ctx.state.apiKeys.verify(presented, ctx.route!.path, ctx.client);
  if (!verdict.ok) {
    ctx.apiKeyId = verdict.id;
    const client = ctx.client;
    ctx.state.events.bus.publish(
      'info',
      { event: 'api_key_rejected', reason: verdict.reason, keyId: verdict.id, site: ctx.site!.id, route: ctx.route!.path, requestId: ctx.id, remoteAddress: ctx.conn.remoteAddress, clientFingerprint: client?.status === 'valid' ? client.identity.fingerprint : null },
      `API key refused: ${verdict.reason}`,
    );
    ctx.responseHeaders = { 'www-authenticate': `Bearer error="invalid_token", error_description="${verdict.reason}"` };
    return verdict.reason;
  }
  ctx.apiKeyId = verdict.id;
  return null;
}

/**
 * The route's token bucket for this client: its certificate when it presented
 * a valid one, else its API key, else its address. Over the limit: 429 with
 * Retry-After and the RateLimit fields (draft-ietf-httpapi-ratelimit-headers).
 */
function limitRate(ctx: RequestContext): Reason | null {
  const limit = ctx.route!.rateLimit;
  if (limit === null) return null;
  const client = ctx.client;
  const who = client?.status === 'valid' ? `c:${client.identity.fingerprint}` : ctx.apiKeyId !== null ? `k:${ctx.apiKeyId}` : `a:${ctx.conn.remoteAddress}`;
  const d = ctx.state.rateBuckets.take(`${ctx.site!.id}|${ctx.route!.path}|${who}`, limit.rps, limit.burst);
  if (d.allowed) return null;
  ctx.state.metrics.rateLimited.inc({ site: ctx.site!.id, route: ctx.route!.path });
  ctx.responseHeaders = {
    'retry-after': String(Math.max(1, Math.ceil(d.retryAfter))),
    'ratelimit-limit': String(limit.burst),
    'ratelimit-remaining': String(d.remaining),
    'ratelimit-reset': String(Math.max(1, Math.ceil(d.reset))),
  };
  return 'rate_limited';
}

function prepareUpstreamRequest(ctx: RequestContext): Reason | null {
  const client = ctx.client;
  ctx.upstreamHeaders = upstreamRequestHeaders(ctx.req.headers, {
    clientAddress: ctx.conn.remoteAddress,
    authority: ctx.authority,
    requestId: ctx.id,
    trustedProxies: ctx.state.config.trustedProxies,
    identityHeaders: ctx.state.config.identityHeaders,
    identityHeader: ctx.site!.identityHeader,
    identity: client?.status === 'valid' ? client.header : null,
    apiKeyHeader: ctx.state.config.apiKeyHeader,
    keyRoute: ctx.route!.apiKeys !== 'off',
  });
  return null;
}

const phases: readonly Phase[] = [limitHeaders, resolveSite, requireClientCertificate, matchRoute, authorizeClient, checkApiKey, limitRate, prepareUpstreamRequest];

/**
 * Runs the phases in order and returns the first reason, or null when the
 * request may go upstream (the context then holds its site, route and
 * upstream request headers). It writes no answer and forwards nothing (the
 * phases still publish their events, take rate tokens and mark a connection
 * to be closed), so the unit tests run it over a request built without a
 * socket.
 */
export function decide(ctx: RequestContext): Reason | null {
  for (const phase of phases) {
    const reason = phase(ctx);
    if (reason !== null) return reason;
  }
  return null;
}

/** Runs the phases, then forwards; the first reason ends the request with its JSON answer. */
export function runPipeline(ctx: RequestContext): void {
  const reason = decide(ctx);
  if (reason !== null) sendError(ctx, reason, ctx.detail);
  else forward(ctx);
}
