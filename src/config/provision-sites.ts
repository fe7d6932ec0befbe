import { normaliseSiteHost } from './addresses.js';
import { ipRulesOf } from './block-lists.js';
import { provisionCertificates } from './provision-certificates.js';
import { provisionClientAuth } from './provision-client-auth.js';
import type { ProvisionContext } from './provision-context.js';
import { HostTable } from './host-table.js';
import { provisionRoutes } from './provision-routes.js';
import type { RawSite } from './schema.js';
import type { Site } from './types.js';

/**
 * Every entry of `sites`, and the table of their hosts: a host belongs to
 * exactly one site, and at most one site is the default.
 */
export function provisionSites(raws: readonly RawSite[], ctx: ProvisionContext): { sites: Site[]; hosts: HostTable<Site>; defaultSite: Site | null } {
  const hosts = new HostTable<Site>();
  const hostOwner = new Map<string, string>();
  const sites: Site[] = [];
  let defaultSite: Site | null = null;
  raws.forEach((raw, i) => {
    const site = provisionSite(raw, i, ctx);
    sites.push(site);
    site.hosts.forEach((host, j) => {
      const owner = hostOwner.get(host);
      if (owner !== undefined) ctx.issue(`sites[${i}].hosts[${j}]`, `"${host}" is already served by ${owner}; each host belongs to exactly one site`);
      else {
        hostOwner.set(host, `sites[${i}]`);
        hosts.add(host, site);
      }
    });
    if (site.isDefault) {
      if (defaultSite) ctx.issue(`sites[${i}].default`, `sites[${defaultSite.index}] (${defaultSite.id}) is already the default site; mark only one site default: true`);
      else defaultSite = site;
    }
  });
  return { sites, hosts, defaultSite };
}

/**
 * One entry of `sites` (`sites[index]`): its hosts, certificates, HSTS,
 * clientAuth and routes. Checks across sites (a host served twice, two
 * defaults) are `provisionSites`'. Issues go to the context; the site returned is
 * then incomplete and must not be served.
 */
export function provisionSite(raw: RawSite, index: number, ctx: ProvisionContext): Site {
  const at = `sites[${index}]`;
  const hosts = raw.hosts.map((h) => normaliseSiteHost(h) as string);
  hosts.forEach((h, j) => {
    if (hosts.indexOf(h) !== j) ctx.issue(`${at}.hosts[${j}]`, `"${h}" is listed twice; remove the duplicate`);
  });
  const { certificates, acme } = provisionCertificates(raw.certificates, hosts, at, ctx);

  const hsts = `max-age=${raw.hsts.maxAge}${raw.hsts.includeSubDomains ? '; includeSubDomains' : ''}${raw.hsts.preload ? '; preload' : ''}`;
  if (raw.hsts.preload && (raw.hsts.maxAge < 31_536_000 || !raw.hsts.includeSubDomains)) {
    ctx.issue(`${at}.hsts.preload`, 'preload lists require maxAge of at least 31536000 and includeSubDomains: true; raise them or drop preload');
  }
  const clientAuth = raw.clientAuth ? provisionClientAuth(raw.clientAuth, `${at}.clientAuth`, ctx) : null;
  const routes = provisionRoutes(raw, at, ctx);
  const identityHeader = (raw.clientAuth?.forwardHeader ?? 'x-client-cert').toLowerCase();
  return { id: hosts[0] as string, index, hosts, isDefault: raw.default, certificates, acme, hsts, clientAuth, identityHeader, routes, ipAccess: ipRulesOf(raw.ipAccess) };
}
