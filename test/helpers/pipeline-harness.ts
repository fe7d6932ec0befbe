import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { pino } from 'pino';
import { ApiKeyRing } from '../../src/access/index.js';
import { parseConfigText, type Config } from '../../src/config/index.js';
import { EventBus, Metrics, type TelemetryEvent } from '../../src/observe/index.js';
import { UpstreamSet } from '../../src/proxy/index.js';
import type { ProxyState, RequestContext } from '../../src/proxy/request-context.js';
import { memoryRateBuckets } from '../../src/state/index.js';
import { ConnectionEvents } from '../../src/telemetry/index.js';
import type { ConnectionInfo } from '../../src/tls/index.js';
import { clientCertReasonOf, identityHeaderValue, identityOf, type ClientCertificate } from '../../src/trust/index.js';
import { TestPki, type Ca, type Leaf } from './pki.js';
import type { Scope } from './proxy.js';

/**
 * What the unit tests of the request pipeline's phases share, whatever the
 * HTTP version of the injected request: one config loaded by the real loader,
 * certificates from the test PKI, the real state of a config generation, and
 * connections as the TLS layer describes them. The request itself, HTTP/1.1
 * or HTTP/2, is built by each test file.
 *
 * Importing this module registers, on the importing test file, a `before`
 * hook that mints the certificates and loads the configs (so the bindings
 * below are set by the time a test runs) and an `after` hook that removes them.
 */

const pki = new TestPki();
after(() => pki.cleanup());

export let clientsRoot: Ca;
export let partnerA: Leaf;
export let partnerB: Leaf;
export let expired: Leaf;
export let config: Config;
/** The partners site after a reload that changed its clientAuth (another verifyDepth). */
export let reloaded: Config;

function configText(serverLeaf: Leaf, verifyDepth: number): string {
  const certificates = `[{ cert: ${serverLeaf.chainFile}, key: ${serverLeaf.keyFile} }]`;
  const upstream = 'upstream: "http://127.0.0.1:9"';
  return `listen: { https: "127.0.0.1:0" }
trustedProxies: [10.0.0.0/8]
limits: { maxHeaderBytes: 1024, maxHeaderFields: 16 }
sites:
  - hosts: [api.test, "*.api.test"]
    certificates: ${certificates}
    routes:
      - { path: /, ${upstream} }
      - { path: /payments/, ${upstream} }
      - { path: /payments/refunds/, ${upstream} }
      - { path: /admin, ${upstream} }
      - { path: /keys/, ${upstream}, apiKeys: required }
      - { path: /maybe-keys/, ${upstream}, apiKeys: optional }
      - { path: /metered-keys/, ${upstream}, apiKeys: required, rateLimit: { rps: 0.01, burst: 1 } }
      - { path: /limited/, ${upstream}, rateLimit: { rps: 0.01, burst: 2 } }
  - hosts: [partners.test]
    certificates: ${certificates}
    clientAuth: { mode: optional, ca: [${clientsRoot.certFile}], verifyDepth: ${verifyDepth}, forwardHeader: x-partner }
    routes:
      - { path: /public/, ${upstream}, clientCert: optional }
      - { path: /members/, ${upstream}, rateLimit: { rps: 0.01, burst: 1 } }
      - { path: /partners/, ${upstream}, allow: { uri: ["spiffe://example.test/partner-a"] } }
  - hosts: [mtls.test]
    certificates: ${certificates}
    clientAuth: { mode: require, ca: [${clientsRoot.certFile}] }
    routes:
      - { path: /v1/, ${upstream} }
  - hosts: [fallback.test]
    default: true
    certificates: ${certificates}
    routes:
      - { path: /, ${upstream} }
`;
}

before(() => {
  const serverRoot = pki.root('pipeline-server-root');
  const serverLeaf = pki.leaf('pipeline-server', serverRoot, { dns: ['api.test', '*.api.test', 'partners.test', 'mtls.test', 'fallback.test'] });
  clientsRoot = pki.root('pipeline-clients-root');
  partnerA = pki.leaf('partner-a', clientsRoot, { eku: 'clientAuth', uris: ['spiffe://example.test/partner-a'] });
  partnerB = pki.leaf('partner-b', clientsRoot, { eku: 'clientAuth', uris: ['spiffe://example.test/partner-b'] });
  expired = pki.leaf('partner-expired', clientsRoot, { eku: 'clientAuth', notBefore: new Date(Date.now() - 20 * 86_400_000), notAfter: new Date(Date.now() - 86_400_000) });
  const source = join(pki.dir, 'portcullis.yaml');
  config = parseConfigText(configText(serverLeaf, 4), source);
  reloaded = parseConfigText(configText(serverLeaf, 2), source);
});

export interface Harness {
  readonly state: ProxyState;
  /** Every event published on the bus, in order. */
  readonly events: TelemetryEvent[];
}

/** The state one config generation runs with, every component the real one, nothing that listens or connects. */
export function stateOf(t: Scope, cfg: Config = config): Harness {
  const log = pino({ level: 'silent' });
  const metrics = new Metrics();
  const bus = new EventBus(log);
  const events: TelemetryEvent[] = [];
  bus.subscribe((e) => events.push(e));
  const upstreams = new UpstreamSet(cfg);
  t.after(() => upstreams.close());
  return { state: { config: cfg, upstreams, log, draining: false, accessLog: null, metrics, events: new ConnectionEvents(bus, metrics), apiKeys: new ApiKeyRing(), rateBuckets: memoryRateBuckets() }, events };
}

/**
 * A TLS connection as the TLS layer describes it: to the site its server name
 * selected, with the verdict on the client certificate (null on sites without
 * clientAuth). The only ConnectionInfo the pipeline tests build.
 */
export function connection(serverName: string, client: ClientCertificate | null, remoteAddress = '192.0.2.10', cfg: Config = config): ConnectionInfo {
  const site = cfg.hosts.lookup(serverName) ?? cfg.defaultSite;
  return { remoteAddress, remotePort: 50_000, tlsVersion: 'TLSv1.3', cipher: 'TLS_AES_128_GCM_SHA256', group: 'X25519', serverName, alpn: 'http/1.1', resumed: false, hello: null, site, client, settling: null };
}

export const noCertificate: ClientCertificate = { status: 'none' };

/** The verdict on a certificate OpenSSL accepted: its identity, identity header and chain, read from the certificate. */
export function valid(leaf: Leaf): ClientCertificate {
  const cert = new X509Certificate(leaf.certPem);
  const identity = identityOf(cert);
  return { status: 'valid', identity, header: identityHeaderValue(identity), leaf: cert, chain: [cert, new X509Certificate(readFileSync(clientsRoot.certFile))] };
}

/** The verdict on a certificate OpenSSL refused with `code`. */
export function refused(leaf: Leaf, code: string): ClientCertificate {
  return { status: 'invalid', reason: clientCertReasonOf(code), detail: code, identity: identityOf(new X509Certificate(leaf.certPem)) };
}

/** The fields the proxy sets on every request it forwards (header-hygiene.ts) for a client at `clientAddress` outside trustedProxies that asked for `authority`. */
export function forwardingFields(ctx: RequestContext, authority: string, clientAddress: string): Record<string, string> {
  return { host: authority, 'x-forwarded-for': clientAddress, 'x-forwarded-proto': 'https', 'x-forwarded-host': authority, 'x-request-id': ctx.id };
}
