import type { IpRules } from '../access/index.js';
import type { BlockList } from 'node:net';
import type { X509Certificate } from 'node:crypto';
import type { CertificatePair } from '../pki/index.js';
import type { AllowList, RevocationPolicy } from '../trust/index.js';
import type { ListenAddress } from './addresses.js';
import type { RedisSettings } from '../state/index.js';

export type { CertificatePair };
import type { TlsProfile } from './tls-profiles.js';
import type { HostTable } from './host-table.js';

/**
 * The provisioned config: parsed once, checked, normalised, deep-frozen.
 * Runtime code reads only this, never the YAML or the environment.
 */
export interface Config {
  /** The file it came from, or "(quickstart)". */
  readonly source: string;
  readonly tls: {
    readonly profile: TlsProfile;
    readonly ticketKeyRotationMs: number;
    /** A certificate that replaces a served one must be valid at least this much longer. */
    readonly rotationMinValidityMs: number;
    /** How long before a certificate expires to warn, longest first. */
    readonly expiryWarningsMs: readonly number[];
    /** Client certificates seen within this long are warned about before they expire. */
    readonly clientInventoryWindowMs: number;
  };
  /**
   * `http`: the redirect-only plain-HTTP listener; `admin`: the admin API (TLS, token; enrollment, metrics). Each null when not configured.
   * `proxyProtocol`: the load balancers whose PROXY headers are believed on `https` and `http` (null when none: no header is read).
   */
  readonly listen: { readonly https: ListenAddress; readonly http: ListenAddress | null; readonly admin: ListenAddress | null; readonly proxyProtocol: BlockList | null };
  /** Worker processes ("auto" resolved to the number of cores). 1 means no cluster: one process serves. */
  readonly workers: number;
  /** Null when none are configured. */
  readonly trustedProxies: BlockList | null;
  /** Sources admitted on the HTTPS listener, checked at accept before any byte is read. */
  readonly ipAccess: IpRules;
  /** Lower case; `authorization` means the Bearer scheme, any other header carries the bare key. Never forwarded upstream where routes take keys. */
  readonly apiKeyHeader: string;
  /** Blocking of sources whose handshakes or client certificates keep failing. */
  readonly detector: {
    readonly threshold: number;
    readonly windowMs: number;
    readonly blockMs: number;
    readonly allow: BlockList;
    /** Receives an alert per block, or null. */
    readonly webhook: string | null;
    /**
     * Counting per JA4 over the same window: past `threshold` failures the
     * fingerprint is flagged (alert), and blocked for blockFor only when
     * `block` is set, since every client of one TLS library shares a JA4.
     */
    readonly fingerprint: { readonly threshold: number; readonly block: boolean };
  };
  readonly dataDir: string;
  /** Where the security state lives: this instance's dataDir and memory, or the cluster's Redis. */
  readonly state: StateSettings;
  /** The built-in CA: `crlPath` is where the redirect listener serves its current CRL (DER), or null. */
  readonly ca: { readonly crlPath: string | null };
  readonly timeouts: Timeouts;
  readonly log: {
    /** Level of the diagnostic log (stderr). */
    readonly level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
    /** Where the access log goes: 'stdout', 'stderr', 'off', or an absolute file path. */
    readonly access: string;
  };
  readonly limits: {
    /** The request's header list as RFC 9113 §6.5.2 counts it (name + value + 32 per field), the same for HTTP/1.1 and HTTP/2. */
    readonly maxHeaderBytes: number;
    /** Header fields a request may carry (pseudo-header fields not counted; every cookie field together counts as one). */
    readonly maxHeaderFields: number;
    /** HTTP/2 streams one client connection may have open at once. */
    readonly maxConcurrentStreams: number;
    /** Connections the proxy opens to one upstream at most; further requests wait for one. */
    readonly maxUpstreamConnections: number;
  };
  readonly sites: readonly Site[];
  /** Host name → site, for SNI and Host headers. */
  readonly hosts: HostTable<Site>;
  readonly defaultSite: Site | null;
  /**
   * Every site's identity header plus `x-client-cert`: removed from every
   * incoming request on every site, so an upstream shared by several sites
   * never sees one a client forged.
   */
  readonly identityHeaders: ReadonlySet<string>;
}

export interface Timeouts {
  readonly handshakeMs: number;
  readonly headersMs: number;
  readonly requestMs: number;
  readonly idleMs: number;
  readonly sendMs: number;
  /** How long a shutdown waits for in-flight requests before closing what is left. */
  readonly drainMs: number;
  readonly upstreamConnectMs: number;
  readonly upstreamResponseMs: number;
  readonly upstreamIdleMs: number;
}

export interface Site {
  /** The first host: names the site in logs and stays the same across reloads while that host does. */
  readonly id: string;
  readonly index: number;
  readonly hosts: readonly string[];
  readonly isDefault: boolean;
  /** Empty while an ACME certificate is not issued yet (the site's handshakes are then refused). */
  readonly certificates: readonly CertificatePair[];
  /** The ACME source, when the site's certificate comes from an ACME CA. */
  readonly acme: AcmeSource | null;
  /** The Strict-Transport-Security value, computed once. */
  readonly hsts: string;
  /** Mutual TLS, when configured. */
  readonly clientAuth: ClientAuth | null;
  /**
   * The header carrying the client identity upstream (lower case). Incoming
   * copies are always removed, also on sites without mutual TLS (then it is
   * the default name, `x-client-cert`).
   */
  readonly identityHeader: string;
  /** Sources admitted to this site, checked at its ClientHello (before TLS). */
  readonly ipAccess: IpRules;
  /** Longest prefix first. */
  readonly routes: readonly Route[];
}


export interface AcmeSource {
  readonly email: string;
  readonly directory: string;
  /** `acme.ca`, trusted for the directory's own TLS besides the public roots. */
  readonly caPem: string | null;
  readonly challenge: 'http-01' | 'tls-alpn-01';
  /** What is ordered: every host of the site (a site with a wildcard host cannot use ACME: that needs dns-01). */
  readonly names: readonly string[];
  /** Why the stored certificate is not served (expired, does not cover a host …), or null when it is served or there is none yet. */
  readonly storedProblem: string | null;
}

export interface Route {
  readonly index: number;
  readonly path: string;
  /** Prefix ends with "/": plain prefix. Otherwise `path` itself or `path/…` (whole segments). */
  readonly segmentBoundary: boolean;
  readonly upstreams: readonly UpstreamTarget[];
  /** Whether a valid client certificate is needed; null on sites without clientAuth. */
  readonly clientCert: 'required' | 'optional' | null;
  /** Who may use the route, when restricted. */
  readonly allow: AllowList | null;
  /** Whether requests need an API key (`required`), may carry one (`optional`: a presented key must be valid), or none is looked at. */
  readonly apiKeys: 'required' | 'optional' | 'off';
  /** The route's own, else its site's; null: not limited. */
  readonly rateLimit: RateLimit | null;
}

/** A token bucket per client identity (certificate, else API key, else address) and route. */
export interface RateLimit {
  readonly rps: number;
  readonly burst: number;
}

export interface ClientAuth {
  /** require: a connection without a valid certificate gets no service; optional: routes decide. */
  readonly mode: 'require' | 'optional';
  /**
   * With `require`, where a connection without a valid certificate is refused:
   * `http`, each request is answered 401/403 with the reason; `handshake`, a
   * missing certificate fails the handshake (certificate_required) and an
   * invalid one is closed before any request.
   */
  readonly refuseAt: 'http' | 'handshake';
  /** The files they were read from (watched for changes). */
  readonly caFiles: readonly string[];
  /** Trusted roots and intermediates, PEM (for OpenSSL) and parsed (for our own checks). */
  readonly caPem: readonly string[];
  readonly caCerts: readonly X509Certificate[];
  /** CA certificates allowed above the leaf, trust anchor included. */
  readonly verifyDepth: number;
  /** How client certificate chains are checked for revocation; null when neither CRLs nor OCSP are configured (the deny list applies anyway). */
  readonly revocation: RevocationPolicy | null;
  /**
   * Names this policy (mode, CAs, depth, revocation): connections and TLS
   * sessions made under another policy are not carried over when a reload changes it.
   */
  readonly key: string;
}

export type UpstreamTarget = HttpUpstream | BuiltinUpstream;

export interface HttpUpstream {
  readonly kind: 'http';
  /** "https://10.0.0.5:9001" */
  readonly origin: string;
  /** The URL's host, without IPv6 brackets. */
  readonly host: string;
  /**
   * The name an HTTPS upstream's certificate must carry, also sent as SNI:
   * upstreamTls.serverName, else the URL's DNS host; undefined for an IP
   * literal (no SNI, verified against the certificate's IP SANs).
   */
  readonly serverName: string | undefined;
  readonly tls: UpstreamTls | null;
}

export interface BuiltinUpstream {
  readonly kind: 'builtin';
  readonly name: 'whoami';
  readonly origin: string;
}

export interface UpstreamTls {
  /** Public roots plus `upstreamTls.ca`, PEM. */
  readonly ca: readonly string[];
  readonly serverName: string | undefined;
  /** Client certificate presented to the upstream. */
  readonly clientCertificate: CertificatePair | undefined;
}

/** `state:` provisioned: `memory` (one instance), or `redis` with where and how to reach it. */
export type StateSettings = { readonly backend: 'memory' } | { readonly backend: 'redis'; readonly redis: RedisSettings };
