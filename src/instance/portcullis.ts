import { inventoryFile, memoryRateBuckets, weakClientsFile } from '../state/index.js';
import { ApiKeyRing, ipAdmitted, type ApiKeyRecord } from '../access/index.js';
import type { AddressInfo } from 'node:net';
import { formatHostPort, sameAddress, type Config, type ListenAddress } from '../config/index.js';
import { PortcullisError } from '../errors.js';
import { HttpsListener, RedirectListener } from '../edge/index.js';
import { ClientVerdicts, refuseUnparsable, handleRequest, handleUpgrade, UpstreamSet, type ProxyState } from '../proxy/index.js';
import { ClientInventory, ConnectionEvents, ProbeGuard, WeakClients, type AccessLog } from '../telemetry/index.js';
import { EventBus, Metrics, type Logger } from '../observe/index.js';
import { RevocationChecker, type DenyEntry } from '../trust/index.js';
import { AlpnChallengeServers, ExpiryMonitor, OcspStapler, SiteServers, TicketKeyRing, acmeAlpnProtocol, checkRotation, classifyHandshakeFailure, replacements } from '../tls/index.js';
import type { AcmeChallengeSet } from '../acme/index.js';

export interface Portcullis {
  /** Where the HTTPS listener is bound (after the latest reload). */
  readonly address: AddressInfo;
  /** Where the redirect listener is bound, when `listen.http` is configured. */
  readonly httpAddress: AddressInfo | null;
  /** The config in force. */
  readonly config: Config;
  /**
   * Switches to a new, already validated config without dropping a connection:
   * sites keep their servers and get new certificates for new handshakes,
   * routes and upstreams apply to every request from now on, a changed listen
   * address is bound before the old one stops accepting. On failure (the new
   * address cannot be bound) nothing changes and the error is thrown.
   */
  reload(config: Config): Promise<void>;
  /**
   * Stops accepting, lets in-flight requests finish (HTTP/1.1 connections close
   * after their current response, HTTP/2 sessions get GOAWAY), and closes
   * whatever is left once `deadlineMs` has passed.
   */
  drain(deadlineMs: number): Promise<void>;
  /**
   * Replaces the deny list: new connections presenting a listed certificate
   * (leaf or CA of its chain) are refused as revoked, and open connections
   * that presented one are closed at once. Returns how many were closed.
   */
  setDenyList(entries: readonly DenyEntry[]): number;
  /** Replaces the API keys in force: every request from now on is checked against these. */
  setApiKeys(records: readonly ApiKeyRecord[]): void;
  /** The ACME challenges to answer from now on: http-01 on the redirect listener, tls-alpn-01 on the HTTPS listener. */
  setAcmeChallenges(set: AcmeChallengeSet): void;
  /** Writes the per-process summaries under dataDir (client inventory, weak clients) now rather than within the minute. */
  flushSummaries(): Promise<void>;
  /** Every connection event and detector alert, as it happens; the last ones are kept (EventBus.recent). */
  readonly events: EventBus;
  /** Stops at once: every connection and upstream pool is closed. Safe to call twice. */
  close(): Promise<void>;
  readonly metrics: Metrics;
}

export interface StartOptions {
  /**
   * Ticket keys managed by the caller (a cluster worker gets its primary's).
   * Without it the instance rotates its own keys.
   */
  readonly tickets?: TicketKeyRing;
  /** Where request lines go; none when the access log is off. */
  readonly accessLog?: AccessLog | null;
  /** Names this process's files under dataDir (the client certificate inventory): "main", or "worker-<id>". */
  readonly processName?: string;
  /** The API keys in force from the start (the store under dataDir). */
  readonly apiKeys?: readonly ApiKeyRecord[];
  /** Certificates blocked from the start (the persisted deny list). */
  readonly denyList?: readonly DenyEntry[];
  /** ACME challenges to answer from the first connection (a worker that starts while an order runs). */
  readonly acmeChallenges?: AcmeChallengeSet;
}


/** How often a drain sweeps connections that became idle since the last sweep. */
const drainSweepMs = 250;

/**
 * Wires the data path: TCP accept and ClientHello peek (edge) → the site's
 * TLS server (tls) → HTTP/1.1 + HTTP/2 → request pipeline (proxy) → upstream
 * pools. Rejects with PCL_LISTEN_FAILED when the address cannot be bound.
 */
export async function startPortcullis(config: Config, log: Logger, options: StartOptions = {}): Promise<Portcullis> {
  const ownsTickets = options.tickets === undefined;
  const tickets = options.tickets ?? new TicketKeyRing();
  if (ownsTickets) tickets.start(config.tls.ticketKeyRotationMs);
  if (!tickets.keepsPrevious) log.warn('this Node.js lacks the session-ticket key hook: a ticket-key rotation ends every cached session');

  const accessLog = options.accessLog ?? null;
  const metrics = new Metrics();
  const bus = new EventBus(log);
  const events = new ConnectionEvents(bus, metrics);
  const apiKeys = new ApiKeyRing();
  const rateBuckets = memoryRateBuckets();
  apiKeys.set(options.apiKeys ?? []);
  let state: ProxyState = { config, upstreams: new UpstreamSet(config), log, draining: false, accessLog, metrics, events, apiKeys, rateBuckets };
  const revocation = new RevocationChecker(log, metrics);
  revocation.setDenyList(options.denyList ?? []);
  const clientPolicies = (c: Config) => c.sites.flatMap((s) => (s.clientAuth ? [s.clientAuth] : []));
  revocation.configure(clientPolicies(config));
  const processName = options.processName ?? 'main';
  const inventory = new ClientInventory(inventoryFile(config.dataDir, processName), log);
  inventory.apply(config.tls.expiryWarningsMs, config.tls.clientInventoryWindowMs);
  const verdicts = new ClientVerdicts(revocation, inventory, log, metrics, events);
  const weakClients = new WeakClients(weakClientsFile(config.dataDir, processName), bus, log);
  // stapling is automatic: every served certificate that names an OCSP responder gets its response stapled
  const stapler = new OcspStapler({ log, metrics });
  stapler.apply(config);
  const expiry = new ExpiryMonitor(log, metrics);
  expiry.apply(config);
  const probes = new ProbeGuard(config, metrics, bus, log);
  const servers = new SiteServers(config, tickets, {
    ocspRequest: (site, certificate, callback) => stapler.respond(site.id, certificate, callback),
    request: (req, res) => handleRequest(state, req, res),
    upgrade: (req, socket, head) => handleUpgrade(state, req, socket, head),
    clientError: (err, socket, site) => refuseUnparsable(state, err, socket, site),
    clientCertificate: (info, site) => verdicts.judged(info, site),
    connectionAccepted: (info, handshakeMs) => events.accepted(info, handshakeMs),
    connectionClosed: (info, reason, detail) => events.closed(info, reason, detail),
    handshakeFailed: (err, socket, site, hello) => {
      const failure = classifyHandshakeFailure(err, socket);
      if (failure.clientCertificate) metrics.clientAuthFailures.inc({ reason: failure.reason });
      events.refused(failure.reason, socket.remoteAddress ?? '', hello, { site: site.id, detail: failure.detail }, failure.clientCertificate ? `client certificate refused in the handshake: ${failure.reason}` : 'TLS handshake refused');
    },
  });
  const acmeHttp = new Map<string, string>();
  const alpnChallenges = new AlpnChallengeServers(config.timeouts.handshakeMs);
  const setAcmeChallenges = (set: AcmeChallengeSet): void => {
    acmeHttp.clear();
    for (const c of set.http) acmeHttp.set(c.token, c.keyAuthorization);
    alpnChallenges.set(set.alpn);
  };
  if (options.acmeChallenges) setAcmeChallenges(options.acmeChallenges);
  const newListener = () =>
    new HttpsListener({
      route: (hello, socket) => {
        // a CA validating tls-alpn-01 offers only acme-tls/1: it gets the challenge certificate and nothing of a site
        if (hello.alpn.length === 1 && hello.alpn[0] === acmeAlpnProtocol) {
          return alpnChallenges.serverFor(hello.serverName) ?? { refuse: 'no_acme_challenge', details: {}, message: `tls-alpn-01 validation for ${hello.serverName ?? '(no name)'} refused: no ACME challenge is pending for it` };
        }
        const site = servers.siteFor(hello.serverName, socket.localAddress ?? '');
        if (!site) return null;
        if (!ipAdmitted(site.ipAccess, socket.remoteAddress ?? '')) {
          return { refuse: 'ip_denied', details: { site: site.id, list: `sites[${site.index}].ipAccess` }, message: `handshake for ${hello.serverName ?? '(no name)'} refused: the source is outside site ${site.id}'s ipAccess` };
        }
        if (site.certificates.length === 0) {
          const why = site.acme?.storedProblem ?? 'the ACME certificate is not issued yet';
          return { refuse: 'certificate_pending', details: { site: site.id, why }, message: `handshake for ${hello.serverName} refused: site ${site.id} has no certificate yet (${why}); it serves once ACME issues one` };
        }
        return servers.serverFor(site);
      },
      handshakeTimeoutMs: () => state.config.timeouts.handshakeMs,
      events,
      ipDenied: (address) => !ipAdmitted(state.config.ipAccess, address),
      blocked: (address) => probes.blocked(address),
      fingerprintBlocked: (ja4, address) => probes.fingerprintBlocked(ja4, address),
    });

  /** Everything beside the listeners that runs timers, watches files or holds connections. */
  const stopComponents = async (): Promise<void> => {
    tickets.stop();
    revocation.stop();
    stapler.stop();
    expiry.stop();
    servers.close();
    alpnChallenges.close();
    await Promise.all([state.upstreams.destroy(), inventory.stop(), weakClients.stop()]);
  };

  let listener = newListener();
  /** Listeners of earlier configs that still have connections open. */
  const retired = new Set<HttpsListener>();
  metrics.watchConnections(() => [listener, ...retired].reduce((n, l) => n + l.connections, 0));
  let address: AddressInfo;
  try {
    address = await listener.listen(config.listen.https, 'listen.https');
  } catch (err) {
    await stopComponents();
    throw err;
  }

  let redirect: { listener: RedirectListener; address: AddressInfo } | null = null;
  const openRedirect = async (at: ListenAddress) => {
    const r = new RedirectListener({ config: () => state.config, httpsPort: () => address.port, log });
    r.setChallengeResponder((token) => acmeHttp.get(token) ?? null);
    return { listener: r, address: await r.listen(at) };
  };
  if (config.listen.http) {
    try {
      redirect = await openRedirect(config.listen.http);
    } catch (err) {
      await listener.stopAccepting();
      await stopComponents();
      throw err;
    }
  }

  let closing: Promise<void> | null = null;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      const all = [listener, ...retired];
      for (const l of all) l.destroyAll();
      await Promise.all([...all.map((l) => l.stopAccepting()), stopComponents(), redirect?.listener.close()]);
    })();
    return closing;
  };

  return {
    get address() {
      return address;
    },
    get httpAddress() {
      return redirect?.address ?? null;
    },
    get config() {
      return state.config;
    },

    async reload(next) {
      if (state.draining) throw new PortcullisError('PCL_RELOAD_FAILED', 'the instance is stopping; a reload would open listeners again');
      // checked before anything changes: on failure every served certificate stays
      const rotation = checkRotation(state.config, next);
      if (rotation.length > 0) throw new PortcullisError('PCL_RELOAD_FAILED', `certificate rotation refused; the served certificates stay:\n  ${rotation.join('\n  ')}`);
      const rotated = [...replacements(state.config, next)];
      // Bind what is new before anything changes, so a failure leaves everything as it was.
      // compared with what is bound, so that port 0 in the old config matches the port it got
      const bound = (configured: ListenAddress | null, at: AddressInfo | undefined) => (configured && at ? { host: configured.host, port: at.port } : configured);
      const movesHttps = !sameAddress(next.listen.https, bound(state.config.listen.https, address)) && !sameAddress(next.listen.https, state.config.listen.https);
      const movesHttp = !sameAddress(next.listen.http, bound(state.config.listen.http, redirect?.address)) && !sameAddress(next.listen.http, state.config.listen.http);
      const fresh = movesHttps ? newListener() : null;
      const freshAddress = fresh ? await fresh.listen(next.listen.https, 'listen.https') : null;
      let freshRedirect: typeof redirect = null;
      if (movesHttp && next.listen.http) {
        try {
          freshRedirect = await openRedirect(next.listen.http);
        } catch (err) {
          fresh?.destroyAll();
          void fresh?.stopAccepting();
          throw err;
        }
      }
      if (fresh && freshAddress) {
        const old = listener;
        retired.add(old);
        void old.stopAccepting().then(() => retired.delete(old));
        listener = fresh;
        address = freshAddress;
        log.info({ event: 'listening', https: formatHostPort(freshAddress.address, freshAddress.port) }, 'HTTPS listener moved');
      }
      if (movesHttp) {
        void redirect?.listener.close();
        redirect = freshRedirect;
        const http = redirect ? formatHostPort(redirect.address.address, redirect.address.port) : null;
        log.info({ event: 'listening', http }, http ? `redirecting HTTP on ${http}` : 'HTTP redirect listener closed');
      }
      if (ownsTickets && next.tls.ticketKeyRotationMs !== state.config.tls.ticketKeyRotationMs) tickets.start(next.tls.ticketKeyRotationMs);
      servers.apply(next);
      stapler.apply(next);
      expiry.apply(next);
      probes.apply(next);
      inventory.apply(next.tls.expiryWarningsMs, next.tls.clientInventoryWindowMs);
      for (const { site, pair } of rotated) {
        log.info(
          { event: 'certificate_rotated', site: site.id, file: pair.certFile, fingerprint: `sha256:${pair.leaf.fingerprint256}`, subject: pair.leaf.subject.split('\n').join(', '), notAfter: new Date(pair.leaf.validTo).toISOString() },
          `site ${site.id} now serves ${pair.certFile} (valid until ${new Date(pair.leaf.validTo).toISOString()})`,
        );
      }
      revocation.configure(clientPolicies(next));
      const old = state;
      state = { config: next, upstreams: new UpstreamSet(next), log, draining: false, accessLog, metrics, events, apiKeys, rateBuckets };
      // requests in flight finish on the old pools, which then close
      void old.upstreams.close();
    },

    async drain(deadlineMs) {
      state.draining = true;
      void redirect?.listener.close();
      const listeners = [listener, ...retired];
      const allClosed = Promise.all(listeners.map((l) => l.stopAccepting()));
      servers.drain();
      const sweep = setInterval(() => servers.drain(), drainSweepMs);
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<'deadline'>((resolve) => (timer = setTimeout(() => resolve('deadline'), deadlineMs)));
      const outcome = await Promise.race([allClosed.then(() => 'drained' as const), deadline]);
      clearInterval(sweep);
      clearTimeout(timer);
      if (outcome === 'deadline') {
        const open = listeners.reduce((n, l) => n + l.connections, 0);
        log.warn({ event: 'drain_deadline', openConnections: open }, `drain deadline reached; closing ${open} connection(s)`);
      }
      await close();
    },

    setDenyList(entries) {
      const list = revocation.setDenyList(entries);
      const closed = servers.closeConnections((info) => verdicts.nowDenied(info));
      log.info({ event: 'deny_list_applied', entries: list.size, closedConnections: closed }, `deny list applied: ${list.size} entr${list.size === 1 ? 'y' : 'ies'}, ${closed} open connection(s) closed`);
      return closed;
    },

    setAcmeChallenges,

    setApiKeys(records) {
      apiKeys.set(records);
      log.info({ event: 'api_keys_applied', keys: apiKeys.size }, `API keys applied: ${apiKeys.size} in the store`);
    },

    async flushSummaries() {
      await Promise.all([inventory.flush(), weakClients.flush()]);
    },

    events: bus,

    close,
    metrics,
  };
}
