import { isIP } from 'node:net';
import { compileAllowList } from '../trust/index.js';
import type { ProvisionContext } from './provision-context.js';
import { provisionUpstreamTls } from './provision-upstream-tls.js';
import type { RawRoute, RawSite } from './schema.js';
import type { RateLimit, Route, UpstreamTarget } from './types.js';

/**
 * A site's `routes` (the site at `at`, `sites[i]`), longest path first: each
 * with its upstreams, its client certificate requirement (which depends on
 * the site's `clientAuth`), allow-list and rate limit (the site's when the
 * route has none).
 */
export function provisionRoutes(site: RawSite, at: string, ctx: ProvisionContext): Route[] {
  const routes = site.routes.map((r, j): Route => {
    const path = `${at}.routes[${j}]`;
    if (site.routes.findIndex((o) => o.path === r.path) !== j) ctx.issue(`${path}.path`, `"${r.path}" is already used by another route of this site; merge them`);
    const upstreams = provisionUpstreams(r, path, ctx);
    if (!site.clientAuth && (r.clientCert !== undefined || r.allow !== undefined)) {
      ctx.issue(`${path}.${r.clientCert !== undefined ? 'clientCert' : 'allow'}`, 'client certificates need clientAuth on the site; add clientAuth: {mode: optional, ca: [your-client-ca.pem]}');
    }
    // a site that requires certificates requires them on every route; an optional site defaults to required
    const clientCert = site.clientAuth ? (site.clientAuth.mode === 'require' ? 'required' : (r.clientCert ?? 'required')) : null;
    if (r.allow && clientCert === 'optional') ctx.issue(`${path}.allow`, 'an allow-list admits only certain certificates, so it needs clientCert: required (anonymous clients could never match it)');
    return { index: j, path: r.path, segmentBoundary: !r.path.endsWith('/'), upstreams, clientCert, allow: r.allow ? compileAllowList(r.allow) : null, apiKeys: r.apiKeys, rateLimit: rateLimitOf(r.rateLimit ?? site.rateLimit) };
  });
  return routes.sort((a, b) => b.path.length - a.path.length);
}

// burst defaults to one second's worth (at least 1)
const rateLimitOf = (raw: { rps: number; burst?: number } | undefined): RateLimit | null => (raw ? { rps: raw.rps, burst: raw.burst ?? Math.max(1, Math.ceil(raw.rps)) } : null);

/** A route's `upstream` (one URL or a list; the route at `at`), with the TLS settings its https:// upstreams share. */
function provisionUpstreams(r: RawRoute, at: string, ctx: ProvisionContext): UpstreamTarget[] {
  const single = typeof r.upstream === 'string';
  const urls = single ? [r.upstream as string] : (r.upstream as string[]);
  const pathOf = (k: number) => (single ? `${at}.upstream` : `${at}.upstream[${k}]`);
  const builtin = urls.filter((u) => u.startsWith('builtin:'));
  if (builtin.length > 0 && urls.length > 1) ctx.issue(`${at}.upstream`, `${builtin[0]} cannot be mixed with other upstreams; give it a route of its own`);
  const anyHttps = urls.some((u) => u.startsWith('https:'));
  if (r.upstreamTls && !anyHttps) ctx.issue(`${at}.upstreamTls`, 'upstreamTls applies to https:// upstreams only; use https:// URLs or remove upstreamTls');
  const tls = anyHttps ? provisionUpstreamTls(r.upstreamTls ?? {}, `${at}.upstreamTls`, ctx) : null;

  return urls.map((u, k) => {
    if (u.startsWith('builtin:')) return { kind: 'builtin', name: 'whoami', origin: u };
    const url = new URL(u);
    if (urls.indexOf(u) !== k) ctx.issue(pathOf(k), `${u} is listed twice; remove the duplicate`);
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const https = url.protocol === 'https:';
    return { kind: 'http', origin: url.origin, host, serverName: https ? (tls?.serverName ?? (isIP(host) ? undefined : host)) : undefined, tls: https ? tls : null };
  });
}
