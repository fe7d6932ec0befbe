import { ApiKeyRing } from '../access/index.js';
import type { AcmeChallengeSet } from '../acme/index.js';
import type { Config } from '../config/index.js';
import type { HttpsListenerOptions } from '../edge/index.js';
import { EventBus, Metrics, type Logger } from '../observe/index.js';
import { ClientVerdicts, handleRequest, handleUpgrade, refuseUnparsable, UpstreamSet, type ProxyState } from '../proxy/index.js';
import { inventoryFile, LeasedRateBuckets, localAnswers, memoryRateBuckets, sharedAnswers, weakClientsFile } from '../state/index.js';
import { ClientInventory, ConnectionEvents, ProbeGuard, SharedBlocks, shareSummaries, summaryOwner, WeakClients } from '../telemetry/index.js';
import { AlpnChallengeServers, classifyHandshakeFailure, ExpiryMonitor, helloRouter, OcspStapler, SiteServers, TicketKeyRing, type TlsHandlers } from '../tls/index.js';
import { RevocationChecker, SharedIntermediates } from '../trust/index.js';
import type { StartOptions } from './portcullis.js';

/** Something of an instance that follows the config: applied after every reload, stopped once. */
export interface Component {
  apply(config: Config): void;
  stop(): void | Promise<void>;
}

/** The parts of one instance but its listeners, wired, each holding the config it was started with. */
export interface Assembly {
  readonly metrics: Metrics;
  readonly bus: EventBus;
  readonly events: ConnectionEvents;
  /** The request pipeline's state: replaced as a whole by every reload. */
  state: ProxyState;
  readonly stateFor: (config: Config) => ProxyState;
  readonly revocation: RevocationChecker;
  readonly verdicts: ClientVerdicts;
  readonly servers: SiteServers;
  readonly apiKeys: ApiKeyRing;
  readonly inventory: ClientInventory;
  readonly weakClients: WeakClients;
  /** In the order a reload applies them. */
  readonly components: readonly Component[];
  readonly listenerOptions: HttpsListenerOptions;
  /** The http-01 answer for a token, while an ACME order waits for it. */
  acmeAnswer(token: string): string | null;
  setAcmeChallenges(set: AcmeChallengeSet): void;
  /** Resolves once what the cluster shares with this process is in force (the detector's blocks); at once without a cluster. Never rejects. */
  readonly ready: Promise<void>;
  /** Stops every component, pool and timer (the listeners are the caller's). */
  stop(): Promise<void>;
}

/** Builds the parts of an instance for `config`: telemetry, revocation, site servers, the ClientHello router, the pipeline's state. */
export function assemble(config: Config, log: Logger, options: StartOptions): Assembly {
  const tickets = options.tickets ?? new TicketKeyRing();
  if (!tickets.keepsPrevious) log.warn('this Node.js lacks the session-ticket key hook: a ticket-key rotation ends every cached session');
  const metrics = new Metrics();
  const bus = new EventBus(log);
  const events = new ConnectionEvents(bus, metrics);
  const apiKeys = new ApiKeyRing();
  apiKeys.set(options.apiKeys ?? []);
  // with the redis backend one limit across the cluster, from leased tokens (no Redis call per request)
  const leasedRates = options.cluster ? new LeasedRateBuckets(options.cluster, log, metrics) : null;
  const rateBuckets = leasedRates ?? memoryRateBuckets();
  const accessLog = options.accessLog ?? null;
  const stateFor = (c: Config): ProxyState => ({ config: c, upstreams: new UpstreamSet(c), log, draining: false, accessLog, metrics, events, apiKeys, rateBuckets });
  // in a cluster, CRLs, OCSP answers and staples are fetched once and shared, each verified by every instance
  const answers = options.cluster ? sharedAnswers(options.cluster, log, metrics) : localAnswers;
  const revocation = new RevocationChecker(log, metrics, answers);
  revocation.setDenyList(options.denyList ?? []);
  const processName = options.processName ?? 'main';
  const inventory = new ClientInventory(inventoryFile(config.dataDir, processName), log);
  const verdicts = new ClientVerdicts(revocation, inventory, log, metrics, events);
  const weakClients = new WeakClients(weakClientsFile(config.dataDir, processName), bus, log);
  const unshareSummaries = shareSummaries(options.cluster ?? null, { inventory, weakClients }, summaryOwner(config.dataDir, processName), log);
  // stapling is automatic: every served certificate that names an OCSP responder gets its response stapled
  const stapler = new OcspStapler({ log, metrics, answers });
  const expiry = new ExpiryMonitor(log, metrics);
  const probes = new ProbeGuard(config, metrics, bus, log);
  // with state.backend: redis, a block decided by any process of the cluster is enforced by this one too
  const blocks = options.cluster ? new SharedBlocks(options.cluster, probes, bus, metrics, log) : null;
  const ownKeys: Component[] = options.tickets ? [] : [ownTickets(tickets)];
  const revocationPolicies: Component = { apply: (c) => revocation.configure(clientPolicies(c)), stop: () => revocation.stop() };
  // with state.backend: redis, the client intermediates every instance saw, so a session resumed from another instance's ticket can be checked
  const shared: Component[] = options.cluster ? [new SharedIntermediates(options.cluster, log)] : [];
  // before the site servers exist: their handshakes use what these hold
  for (const c of [...ownKeys, stapler, expiry, inventory, revocationPolicies, ...shared]) c.apply(config);
  const holder = { state: stateFor(config) };
  const servers = new SiteServers(config, tickets, siteHandlers(() => holder.state, stapler, verdicts, events, metrics));
  const challenges = new AcmeChallenges(config);
  if (options.acmeChallenges) challenges.set(options.acmeChallenges);
  const components: Component[] = [...ownKeys, servers, stapler, expiry, probes, ...(blocks ? [blocks] : []), inventory, revocationPolicies, ...shared];
  return Object.assign(holder, {
    metrics, bus, events, stateFor, revocation, verdicts, servers, apiKeys, inventory, weakClients, components,
    listenerOptions: { route: helloRouter(servers, challenges.alpn), events, guard: probes },
    acmeAnswer: (token: string) => challenges.httpAnswer(token),
    setAcmeChallenges: (set: AcmeChallengeSet) => challenges.set(set),
    ready: blocks?.start() ?? Promise.resolve(),
    stop: async () => {
      challenges.alpn.close();
      leasedRates?.stop();
      unshareSummaries();
      await Promise.all([...components.map((c) => c.stop()), holder.state.upstreams.destroy(), weakClients.stop()]);
    },
  });
}

/** The ACME challenges an instance answers: http-01 tokens on the redirect listener, tls-alpn-01 certificates on the HTTPS port. */
class AcmeChallenges {
  readonly #http = new Map<string, string>();
  readonly alpn: AlpnChallengeServers;

  constructor(config: Config) {
    this.alpn = new AlpnChallengeServers(config.timeouts.handshakeMs);
  }

  set(set: AcmeChallengeSet): void {
    this.#http.clear();
    for (const c of set.http) this.#http.set(c.token, c.keyAuthorization);
    this.alpn.set(set.alpn);
  }

  httpAnswer(token: string): string | null {
    return this.#http.get(token) ?? null;
  }
}

const clientPolicies = (c: Config) => c.sites.flatMap((s) => (s.clientAuth ? [s.clientAuth] : []));

/** The instance's own ticket keys: rotated on the config's schedule, restarted when a reload changes it. */
function ownTickets(tickets: TicketKeyRing): Component {
  let rotationMs: number | null = null;
  return {
    apply(config) {
      if (config.tls.ticketKeyRotationMs === rotationMs) return;
      rotationMs = config.tls.ticketKeyRotationMs;
      tickets.start(rotationMs);
    },
    stop: () => tickets.stop(),
  };
}

/** What the site servers call: requests into the pipeline of the state in force, connection events, verdicts, staples. */
function siteHandlers(state: () => ProxyState, stapler: OcspStapler, verdicts: ClientVerdicts, events: ConnectionEvents, metrics: Metrics): TlsHandlers {
  return {
    ocspRequest: (site, certificate, callback) => stapler.respond(site.id, certificate, callback),
    request: (req, res) => handleRequest(state(), req, res),
    upgrade: (req, socket, head) => handleUpgrade(state(), req, socket, head),
    clientError: (err, socket, site) => refuseUnparsable(state(), err, socket, site),
    clientCertificate: (info, site) => verdicts.judge(info, site),
    connectionAccepted: (info, handshakeMs) => events.accepted(info, handshakeMs),
    connectionClosed: (info, reason, detail) => events.closed(info, reason, detail),
    handshakeFailed: (err, socket, site, hello) => {
      const failure = classifyHandshakeFailure(err, socket);
      if (failure.clientCertificate) metrics.clientAuthFailures.inc({ reason: failure.reason });
      events.refused(failure.reason, socket.remoteAddress ?? '', hello, { site: site.id, detail: failure.detail }, failure.clientCertificate ? `client certificate refused in the handshake: ${failure.reason}` : 'TLS handshake refused');
    },
  };
}
