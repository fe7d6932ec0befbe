import { availableParallelism } from 'node:os';
import type { ConfigIssue } from '../errors.js';
import { parseListenAddress } from './addresses.js';
import { blockListOf, ipRulesOf } from './block-lists.js';
import { durationMs } from './durations.js';
import { createProvisionContext, type ProvisionContext } from './provision-context.js';
import { provisionSites } from './provision-sites.js';
import { provisionState } from './provision-state.js';
import type { RawConfig } from './schema.js';
import { runtimeGroups } from './tls-groups.js';
import { postQuantumOnly, tlsProfiles, type TlsProfile } from './tls-profiles.js';
import type { Config, Timeouts } from './types.js';

/**
 * Turns a schema-valid raw config into the runtime config: resolves paths
 * against the config's folder, reads and checks every file, compiles host
 * and route tables, and runs the cross-field checks. Collects every issue
 * instead of stopping at the first; returns them when there is any.
 *
 * Each section is provisioned by its own module over one `ProvisionContext`:
 * sites (`provision-sites.ts`), their certificates (`provision-certificates.ts`,
 * `provision-acme.ts`), clientAuth (`provision-client-auth.ts`,
 * `provision-revocation.ts`) and routes (`provision-routes.ts`,
 * `provision-upstream-tls.ts`). What is left here is the top level.
 */
export function provision(raw: RawConfig, source: string, baseDir: string): { config?: Config; issues: ConfigIssue[] } {
  const ctx = createProvisionContext({ baseDir, dataDir: raw.dataDir, hasHttpListener: raw.listen.http !== undefined });
  const webhook = raw.detector.webhook ?? null;
  // alerts name addresses under attack: plain HTTP only to this machine
  if (webhook && webhook.startsWith('http:') && !['127.0.0.1', 'localhost', '[::1]'].includes(new URL(webhook).hostname)) {
    ctx.issue('detector.webhook', 'use https:// for a webhook on another machine (plain http:// is accepted for 127.0.0.1 and localhost only)');
  }
  const { sites, hosts, defaultSite } = provisionSites(raw.sites, ctx);
  const keyHeaderOwner = sites.find((s) => s.identityHeader === raw.apiKeyHeader);
  if (keyHeaderOwner || raw.apiKeyHeader === 'x-client-cert') {
    // identity headers are stripped from every request and set by the proxy: a key there would be judged, then replaced
    ctx.issue('apiKeyHeader', `"${raw.apiKeyHeader}" carries the client certificate identity to upstreams${keyHeaderOwner ? ` (sites[${keyHeaderOwner.index}].clientAuth.forwardHeader)` : ''}; use another header for API keys, e.g. "x-api-key"`);
  }
  if (raw.ca.crlPath !== undefined && !ctx.hasHttpListener) {
    ctx.issue('ca.crlPath', 'the CRL is served on the plain-HTTP listener, as CRL distribution points are; add listen: {http: "0.0.0.0:80"} or remove ca.crlPath');
  }
  const profile = profileOf(raw.tls, ctx);
  const state = provisionState(raw.state, ctx);
  if (ctx.issues.length > 0) return { issues: [...ctx.issues] };
  return { config: deepFreeze(configOf(raw, source, ctx, { sites, hosts, defaultSite, state }, profile)), issues: [] };
}

/** The TLS profile `tls` names; `postQuantum: required` needs TLS 1.3 only, and a runtime with ML-KEM. */
function profileOf(tls: RawConfig['tls'], ctx: ProvisionContext): TlsProfile {
  if (tls.postQuantum === 'preferred') return tlsProfiles[tls.profile];
  if (tls.profile !== 'modern') ctx.issue('tls.postQuantum', 'required needs tls.profile: modern: TLS 1.2 has no post-quantum groups, so TLS 1.2 clients could never connect');
  else if (!postQuantumOnly) ctx.issue('tls.postQuantum', `required needs a runtime with ML-KEM, and Node ${process.version} bundles OpenSSL ${runtimeGroups.openssl}; run Portcullis on Node 24 LTS (or Node 22.20 or later), or use preferred`);
  return postQuantumOnly ?? tlsProfiles[tls.profile];
}

/** The top level of the runtime config, around the provisioned sites; nothing here can fail. */
function configOf(raw: RawConfig, source: string, ctx: ProvisionContext, { sites, hosts, defaultSite, state }: Pick<Config, 'sites' | 'hosts' | 'defaultSite' | 'state'>, profile: TlsProfile): Config {
  return {
    source,
    tls: {
      profile,
      ticketKeyRotationMs: durationMs(raw.tls.ticketKeyRotation),
      rotationMinValidityMs: durationMs(raw.tls.rotationMinValidity),
      expiryWarningsMs: raw.tls.expiryWarnings.map(durationMs).sort((a, b) => b - a),
      clientInventoryWindowMs: durationMs(raw.tls.clientInventoryWindow),
    },
    listen: {
      https: parseListenAddress(raw.listen.https)!,
      http: raw.listen.http === undefined ? null : parseListenAddress(raw.listen.http),
      admin: raw.listen.admin === undefined ? null : parseListenAddress(raw.listen.admin),
      // null when empty: then no connection is read for a header, as without the key
      proxyProtocol: raw.listen.proxyProtocol.length > 0 ? blockListOf(raw.listen.proxyProtocol) : null,
    },
    workers: raw.workers === 'auto' ? availableParallelism() : raw.workers,
    // null when empty: most deployments have no proxy in front, and then no check runs per request
    trustedProxies: raw.trustedProxies.length > 0 ? blockListOf(raw.trustedProxies) : null,
    apiKeyHeader: raw.apiKeyHeader,
    ipAccess: ipRulesOf(raw.ipAccess),
    detector: { threshold: raw.detector.threshold, windowMs: durationMs(raw.detector.window), blockMs: durationMs(raw.detector.blockFor), allow: blockListOf(raw.detector.allow), webhook: raw.detector.webhook ?? null, fingerprint: raw.detector.fingerprint },
    dataDir: ctx.dataDir,
    state,
    ca: { crlPath: raw.ca.crlPath ?? null },
    timeouts: timeoutsOf(raw.timeouts),
    log: { level: raw.log.level, access: ['stdout', 'stderr', 'off'].includes(raw.log.access) ? raw.log.access : ctx.file(raw.log.access) },
    limits: raw.limits,
    sites,
    hosts,
    defaultSite,
    identityHeaders: new Set(['x-client-cert', ...sites.map((s) => s.identityHeader)]),
  };
}

function timeoutsOf(t: RawConfig['timeouts']): Timeouts {
  return {
    handshakeMs: durationMs(t.handshake),
    headersMs: durationMs(t.headers),
    requestMs: durationMs(t.request),
    idleMs: durationMs(t.idle),
    sendMs: durationMs(t.send),
    drainMs: durationMs(t.drain),
    upstreamConnectMs: durationMs(t.upstreamConnect),
    upstreamResponseMs: durationMs(t.upstreamResponse),
    upstreamIdleMs: durationMs(t.upstreamIdle),
  };
}

/** Freezes plain objects and arrays all the way down; class instances (certificates, tables) keep their own encapsulation. */
function deepFreeze<T>(value: T): T {
  if (value === null || typeof value !== 'object' || Object.isFrozen(value)) return value;
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== Array.prototype) return value;
  Object.freeze(value);
  for (const v of Object.values(value as object)) deepFreeze(v);
  return value;
}
