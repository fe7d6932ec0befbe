import { apiKeyPrefix } from '../access/index.js';
import type { IncomingHttpHeaders } from 'node:http';
import type { BlockList } from 'node:net';
import { isIPv4 } from 'node:net';
import type { HeaderMap } from './request-context.js';

/**
 * Hop-by-hop fields (RFC 9110 §7.6.1) and those only the proxy may set.
 * Fields named in `Connection` are dropped too. `expect` is answered by the
 * proxy itself; `proxy-authorization` is meant for us, never the upstream.
 */
const hopByHop = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
  'expect',
]);

/** Set by the proxy on every request; incoming values are replaced (or, from a trusted proxy, extended). */
const ours = new Set(['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-request-id']);

/**
 * Request fields never forwarded, compared in canonical spelling (see
 * `canonicalName`): the hop-by-hop ones, ours, and `Proxy`, which no client
 * has a reason to send and which CGI-style stacks turn into the HTTP_PROXY
 * environment variable, the outgoing proxy of the application's own requests
 * ("httpoxy", CVE-2016-5385).
 */
const neverUpstream: ReadonlySet<string> = new Set([...hopByHop, ...ours, 'proxy']);

/**
 * Claims about the client or the original URL that only a proxy may make;
 * frameworks act on them (Spring reads X-Forwarded-Port/-Prefix, IIS and
 * Symfony route on X-Original-URL). Kept only from a trusted proxy, as is
 * every other `x-forwarded-*` field.
 */
const proxyClaims = new Set([
  'forwarded',
  'x-real-ip',
  'true-client-ip',
  'x-client-ip',
  'x-cluster-client-ip',
  'cf-connecting-ip',
  'fastly-client-ip',
  'x-original-url',
  'x-rewrite-url',
  'x-original-host',
]);

/**
 * A field name as CGI-style stacks (WSGI, Rack, PHP-FPM) see it: they read
 * `x_client_cert` as `x-client-cert` (both become HTTP_X_CLIENT_CERT), so a
 * field the proxy drops or owns must be compared in this spelling.
 */
function canonicalName(name: string): string {
  return name.includes('_') ? name.replaceAll('_', '-') : name;
}

const lowerCase = (token: string) => token.toLowerCase();

/** The two values nearly every `Connection` field has, parsed once (neither token changes under `spelling`). */
const commonTokens = new Map<string, ReadonlySet<string>>([
  ['keep-alive', new Set(['keep-alive'])],
  ['close', new Set(['close'])],
]);

/** The field names listed in `Connection`, each passed through `spelling`; null without the field. */
function connectionTokens(value: string | string[] | undefined, spelling: (token: string) => string): ReadonlySet<string> | null {
  if (value === undefined) return null;
  const common = typeof value === 'string' ? commonTokens.get(value) : undefined;
  if (common !== undefined) return common;
  const text = Array.isArray(value) ? value.join(',') : value;
  return new Set(text.split(',').map((t) => spelling(t.trim().toLowerCase())));
}

export interface ForwardingFacts {
  readonly clientAddress: string;
  readonly authority: string;
  readonly requestId: string;
  readonly trustedProxies: BlockList | null;
  /** Every configured identity header (lower case): incoming copies are always dropped. */
  readonly identityHeaders: ReadonlySet<string>;
  /** The one this site sets. */
  readonly identityHeader: string;
  /** Its value for this request, when a valid client certificate was presented. */
  readonly identity: string | null;
  /** The header API keys come in (config.apiKeyHeader). */
  readonly apiKeyHeader: string;
  /** Whether the route takes API keys: then that header is never forwarded. On every route an `authorization` or key header value carrying one of our keys is dropped. */
  readonly keyRoute: boolean;
}

/** The request fields sent upstream: hop-by-hop fields removed, forwarding fields set by us. */
export function upstreamRequestHeaders(incoming: IncomingHttpHeaders, facts: ForwardingFacts): HeaderMap {
  // in canonical spelling, as the fields are compared: "Connection: x_drop" drops x-drop too, and the other way round
  const listed = connectionTokens(incoming.connection, canonicalName);
  const trusted = isTrusted(facts.clientAddress, facts.trustedProxies);
  const out: HeaderMap = {};
  for (const name in incoming) {
    const value = incoming[name];
    if (value === undefined || name.charCodeAt(0) === 58 /* ":" pseudo-header */) continue;
    // every check in the spelling a CGI-style upstream reads: proxy_authorization is its Proxy-Authorization
    const canonical = canonicalName(name);
    if (neverUpstream.has(canonical) || listed?.has(canonical) || facts.identityHeaders.has(canonical)) continue;
    // a key header the proxy did not judge (a CGI-style spelling) must not reach the upstream either
    if (canonical === facts.apiKeyHeader && facts.keyRoute) continue;
    if ((canonical === facts.apiKeyHeader || canonical === 'authorization') && carriesApiKey(value)) continue;
    if (!trusted && (proxyClaims.has(canonical) || canonical.startsWith('x-forwarded-'))) continue;
    out[name] = name === 'cookie' && Array.isArray(value) ? value.join('; ') : value;
  }
  out.host = facts.authority;
  const priorFor = trusted ? incoming['x-forwarded-for'] : undefined;
  out['x-forwarded-for'] = priorFor ? `${Array.isArray(priorFor) ? priorFor.join(', ') : priorFor}, ${facts.clientAddress}` : facts.clientAddress;
  out['x-forwarded-proto'] = (trusted && firstValue(incoming['x-forwarded-proto'])) || 'https';
  out['x-forwarded-host'] = (trusted && firstValue(incoming['x-forwarded-host'])) || facts.authority;
  out['x-request-id'] = facts.requestId;
  if (facts.identity !== null) out[facts.identityHeader] = facts.identity;
  return out;
}

/** The response fields sent to the client: hop-by-hop fields removed, HSTS ours, request id added. */
export function clientResponseHeaders(upstream: IncomingHttpHeaders, hsts: string | null, requestId: string): HeaderMap {
  const listed = connectionTokens(upstream.connection, lowerCase);
  const out: HeaderMap = {};
  for (const name in upstream) {
    const value = upstream[name];
    if (value === undefined || hopByHop.has(name) || listed?.has(name) || name === 'strict-transport-security') continue;
    out[name] = value;
  }
  if (hsts) out['strict-transport-security'] = hsts;
  out['x-request-id'] = requestId;
  return out;
}

function carriesApiKey(value: string | string[]): boolean {
  return (Array.isArray(value) ? value : [value]).some((v) => v.includes(apiKeyPrefix));
}

function firstValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

function isTrusted(address: string, list: BlockList | null): boolean {
  if (list === null) return false;
  if (address.startsWith('::ffff:') && isIPv4(address.slice(7))) return list.check(address.slice(7), 'ipv4');
  return list.check(address, isIPv4(address) ? 'ipv4' : 'ipv6');
}
