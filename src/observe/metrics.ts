import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { SiteHistogram } from './site-histogram.js';

/** Request and upstream durations: 5 ms to 30 s. */
const durationBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/**
 * The instance's Prometheus registry. Label values come from bounded
 * vocabularies (reason codes), never from addresses or names clients choose.
 * In cluster mode the primary sums the workers' counters; gauges aggregate
 * by minimum (the worst worker: earliest expiry, stalest CRL, missing staple).
 */
export class Metrics {
  readonly registry = new Registry();

  /** Connections refused before or during the TLS handshake, by reason code. */
  readonly refusedConnections = new Counter<'reason'>({
    name: 'portcullis_connections_refused_total',
    help: 'Connections refused before or during the TLS handshake, by reason',
    labelNames: ['reason'],
    registers: [this.registry],
  });

  /** Established connections the proxy ended because the client abused them, by reason code. */
  readonly closedConnections = new Counter<'reason'>({
    name: 'portcullis_connections_closed_total',
    help: 'Established connections ended because the client exceeded a per-connection limit or broke the protocol (rapid_reset, control_frame_flood, http2_protocol_error), by reason',
    labelNames: ['reason'],
    registers: [this.registry],
  });

  /** Client certificates refused (or missing where required), by reason code. */
  readonly clientAuthFailures = new Counter<'reason'>({
    name: 'portcullis_client_auth_failures_total',
    help: 'Client certificates refused, or missing where one is required, by reason',
    labelNames: ['reason'],
    registers: [this.registry],
  });

  // --- revocation of client certificates (CRL, OCSP, deny list) ---
  // `source` labels are CRL files and URLs of the config, or distribution points of certificates that chained to a configured CA: bounded.

  /** One per client certificate chain checked: the decision, the source that decided it, and the site's policy when no answer could be had. */
  readonly revocationChecks = new Counter<'result' | 'source' | 'policy'>({
    name: 'portcullis_revocation_checks_total',
    help: 'Revocation decisions on client certificate chains, by result (good, revoked, unavailable), deciding source (crl, ocsp, deny-list, none) and onRevocationUnavailable policy',
    labelNames: ['result', 'source', 'policy'],
    registers: [this.registry],
  });

  readonly crlLoads = new Counter<'result'>({
    name: 'portcullis_crl_loads_total',
    help: 'CRL loads and fetches, by result (ok, or why the CRL was not used)',
    labelNames: ['result'],
    registers: [this.registry],
  });

  readonly crlThisUpdate = new Gauge<'source'>({
    name: 'portcullis_crl_this_update_timestamp_seconds',
    help: 'thisUpdate of the CRL in use per source (age = time() - this value)',
    labelNames: ['source'],
    registers: [this.registry],
    aggregator: 'min',
  });

  readonly crlNextUpdate = new Gauge<'source'>({
    name: 'portcullis_crl_next_update_timestamp_seconds',
    help: 'nextUpdate of the CRL in use per source (0 when the CRL has none); past it the CRL is stale',
    labelNames: ['source'],
    registers: [this.registry],
    aggregator: 'min',
  });

  crlLoaded(source: string, thisUpdate: Date, nextUpdate: Date | null): void {
    this.crlThisUpdate.set({ source }, thisUpdate.getTime() / 1000);
    this.crlNextUpdate.set({ source }, nextUpdate ? nextUpdate.getTime() / 1000 : 0);
  }

  forgetCrl(source: string): void {
    this.crlThisUpdate.remove({ source });
    this.crlNextUpdate.remove({ source });
  }

  // --- OCSP queries, for client certificates ("client") and for stapling our own ("staple") ---

  readonly ocspRequests = new Counter<'purpose' | 'result'>({
    name: 'portcullis_ocsp_requests_total',
    help: 'OCSP queries by purpose (client, staple) and result (good, revoked, unknown, or why no usable answer came)',
    labelNames: ['purpose', 'result'],
    registers: [this.registry],
  });

  readonly ocspLatency = new Histogram<'purpose'>({
    name: 'portcullis_ocsp_responder_seconds',
    help: 'Time from OCSP request to verified answer or failure, by purpose',
    labelNames: ['purpose'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });

  ocspQueried(purpose: 'client' | 'staple', result: string, seconds: number): void {
    this.ocspRequests.inc({ purpose, result });
    this.ocspLatency.observe({ purpose }, seconds);
  }

  /** With state.backend: redis, where each CRL, OCSP answer and staple came from (docs/cluster.md). */
  readonly sharedAnswers = new Counter<'kind' | 'result'>({
    name: 'portcullis_shared_answers_total',
    help: 'CRLs (crl), client OCSP answers (ocsp) and staples (staple) obtained in cluster mode, by result: shared (the cluster\'s copy, verified here), fetched (from the origin, then shared), rejected (a cluster copy that failed verification), direct (fetched without sharing: Redis unavailable)',
    labelNames: ['kind', 'result'],
    registers: [this.registry],
  });

  // --- OCSP stapling of our server certificates ---
  // `certificate` labels are the first 16 hex digits of a served leaf's SHA-256 fingerprint: one per configured certificate, bounded.

  readonly ocspStapleStatus = new Gauge<'site' | 'certificate'>({
    name: 'portcullis_ocsp_staple_status',
    help: 'Whether a fresh OCSP response is stapled for the certificate (1) or none is (0: not fetched yet, expired, or revoked)',
    labelNames: ['site', 'certificate'],
    registers: [this.registry],
    aggregator: 'min',
  });

  readonly ocspStapleNextUpdate = new Gauge<'site' | 'certificate'>({
    name: 'portcullis_ocsp_staple_next_update_seconds',
    help: 'nextUpdate (unix time) of the stapled OCSP response; 0 when none is stapled or it has no nextUpdate',
    labelNames: ['site', 'certificate'],
    registers: [this.registry],
    aggregator: 'min',
  });

  ocspStaple(site: string, certificate: string, fresh: boolean, nextUpdate: Date | null): void {
    this.ocspStapleStatus.set({ site, certificate }, fresh ? 1 : 0);
    this.ocspStapleNextUpdate.set({ site, certificate }, fresh && nextUpdate ? nextUpdate.getTime() / 1000 : 0);
  }

  forgetOcspStaple(site: string, certificate: string): void {
    this.ocspStapleStatus.remove({ site, certificate });
    this.ocspStapleNextUpdate.remove({ site, certificate });
  }

  // --- certificate expiry: computed at each scrape from what the expiry monitor watches ---

  #expiring: () => readonly { site: string; role: string; certificate: string; notAfter: number }[] = () => [];

  readonly certificateExpiry = new Gauge<'site' | 'role' | 'certificate'>({
    name: 'portcullis_certificate_expiry_seconds',
    help: 'Seconds until a served certificate (role served) or a trusted client CA (role client_ca) expires; negative once expired',
    labelNames: ['site', 'role', 'certificate'],
    registers: [this.registry],
    aggregator: 'min',
    collect: () => {
      this.certificateExpiry.reset();
      const now = Date.now();
      for (const c of this.#expiring()) this.certificateExpiry.set({ site: c.site, role: c.role, certificate: c.certificate }, Math.round((c.notAfter - now) / 1000));
    },
  });

  watchExpiry(source: () => readonly { site: string; role: string; certificate: string; notAfter: number }[]): void {
    this.#expiring = source;
  }

  // --- connections and requests ---
  // `version`, `cipher` and `group` come from the TLS profile (a handful of values), `route` from the config, `status` from HTTP: all bounded.

  readonly handshakes = new Counter<'version' | 'cipher' | 'group' | 'resumed'>({
    name: 'portcullis_handshakes_total',
    help: 'Completed TLS handshakes by negotiated version, cipher, key-exchange group and whether the session was resumed (refused ones: portcullis_connections_refused_total)',
    labelNames: ['version', 'cipher', 'group', 'resumed'],
    registers: [this.registry],
  });

  readonly legacyAttempts = new Counter<'offered'>({
    name: 'portcullis_legacy_protocol_attempts_total',
    help: 'Handshakes refused because the client offered only TLS versions below the profile, by the highest version offered',
    labelNames: ['offered'],
    registers: [this.registry],
  });

  readonly requests: Counter<'site' | 'route' | 'status'> = new Counter<'site' | 'route' | 'status'>({
    name: 'portcullis_requests_total',
    help: 'Requests by site, route (its path prefix; empty when none matched) and response status (0: no response was sent)',
    labelNames: ['site', 'route', 'status'],
    registers: [this.registry],
    collect: () => this.#countRequests(),
  });

  /**
   * Requests counted per site → route → status in plain numbers, handed to the
   * counter above when it is read: prom-client hashes the label set on every
   * `inc`, which a request should not pay.
   */
  readonly #requestCounts = new Map<string, Map<string, Map<number, { readonly labels: { site: string; route: string; status: string }; pending: number }>>>();

  #countRequests(): void {
    for (const routes of this.#requestCounts.values()) {
      for (const statuses of routes.values()) {
        for (const series of statuses.values()) {
          if (series.pending === 0) continue;
          this.requests.inc(series.labels, series.pending);
          series.pending = 0;
        }
      }
    }
  }

  readonly requestSeconds = new SiteHistogram('portcullis_request_duration_seconds', 'Time from request to the end of the response, per site', durationBuckets, this.registry);

  readonly upstreamSeconds = new SiteHistogram('portcullis_upstream_duration_seconds', 'Time from sending a request upstream to the end of the upstream response, per site', durationBuckets, this.registry);

  #openConnections: () => number = () => 0;

  readonly activeConnections: Gauge = new Gauge({
    name: 'portcullis_active_connections',
    help: 'TCP connections open on the HTTPS listener (in handshake or serving)',
    registers: [this.registry],
    // a count per worker: the cluster total is the sum
    aggregator: 'sum',
    collect: () => this.activeConnections.set(this.#openConnections()),
  });

  watchConnections(count: () => number): void {
    this.#openConnections = count;
  }

  requestDone(site: string, route: string, status: number, seconds: number, upstreamSeconds: number | null): void {
    let routes = this.#requestCounts.get(site);
    if (routes === undefined) this.#requestCounts.set(site, (routes = new Map()));
    let statuses = routes.get(route);
    if (statuses === undefined) routes.set(route, (statuses = new Map()));
    const series = statuses.get(status);
    if (series === undefined) statuses.set(status, { labels: { site, route, status: String(status) }, pending: 1 });
    else series.pending++;
    this.requestSeconds.observe(site, seconds);
    if (upstreamSeconds !== null) this.upstreamSeconds.observe(site, upstreamSeconds);
  }

  readonly rateLimited = new Counter<'site' | 'route'>({
    name: 'portcullis_rate_limited_total',
    help: 'Requests answered 429 because their client exceeded the route rate limit, by site and route',
    labelNames: ['site', 'route'],
    registers: [this.registry],
  });

  /** The redis backend's rate limits (src/state/leased-rate-buckets.ts): lease requests to Redis, and falls back to local buckets. */
  readonly rateLimitLeases = new Counter<'result'>({
    name: 'portcullis_rate_limit_leases_total',
    help: 'Rate-limit token leases asked of the redis state backend, by result (granted, empty: the fleet bucket had no token, failed)',
    labelNames: ['result'],
    registers: [this.registry],
  });

  readonly rateLimitFallbacks = new Counter({
    name: 'portcullis_rate_limit_fallbacks_total',
    help: "Times rate limits fell back to this process's own buckets because the redis state backend was lost (each process then admits a client's full limit)",
    registers: [this.registry],
  });

  readonly sourcesBlocked = new Counter({
    name: 'portcullis_sources_blocked_total',
    help: 'Source addresses the detector blocked (their later connections count as connections_refused_total{reason="blocked"})',
    registers: [this.registry],
  });

  readonly fingerprintsFlagged = new Counter<'blocked'>({
    name: 'portcullis_fingerprints_flagged_total',
    help: 'JA4 fingerprints that crossed detector.fingerprint.threshold, by whether they were blocked (detector.fingerprint.block)',
    labelNames: ['blocked'],
    registers: [this.registry],
  });

  #blockedNow: () => number = () => 0;

  readonly blockedSources: Gauge = new Gauge({
    name: 'portcullis_blocked_sources',
    help: 'Source addresses blocked right now',
    registers: [this.registry],
    aggregator: 'max',
    collect: () => this.blockedSources.set(this.#blockedNow()),
  });

  watchBlocked(count: () => number): void {
    this.#blockedNow = count;
  }
}
